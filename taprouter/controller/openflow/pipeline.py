"""The OpenFlow pipeline: its tables and what each may match, cookies, priorities, group ids, meters,
and the form of a route flow."""

from __future__ import annotations

from enum import IntEnum
from typing import Iterable

from ... import prefix
from .flows import ETH_TYPE_IPV4, ETH_TYPE_IPV6, FieldMatch, Flow, Match, ToGroup, exact, to_controller
from .meters import MeterSpec


class Table(IntEnum):
    INGRESS = 0  # frames on known ports addressed to the router
    POLICY = 1  # operators' policies: drop, permit, police, forward elsewhere (policy-based routing)
    PUNT = 2  # what the kernel must see goes to the controller
    FIB4 = 3  # IPv4 longest-prefix match, priority by prefix length
    FIB6 = 4  # IPv6 likewise
    PUNT_POLICE = 5  # the punt table's metered classes, policed per ingress port, then to the controller


_PUNT_FIELDS = frozenset({"eth_type", "arp_tpa", "ip_proto", "icmpv6_type", "ipv4_dst", "ipv6_dst", "tcp_src",
                          "tcp_dst", "ipv4_src", "ipv6_src"})
# Which fields each table may match on; every planned flow is checked against it.
TABLE_FIELDS: dict[Table, frozenset[str]] = {
    Table.INGRESS: frozenset({"in_port", "vlan_vid", "eth_type", "eth_dst"}),
    Table.POLICY: _PUNT_FIELDS | {"in_port", "ipv4_src", "ipv6_src", "udp_src", "udp_dst", "sctp_src", "sctp_dst",
                                  "icmpv4_type"},
    Table.PUNT: _PUNT_FIELDS,
    Table.FIB4: frozenset({"eth_type", "ipv4_dst"}),
    Table.FIB6: frozenset({"eth_type", "ipv6_dst"}),
    Table.PUNT_POLICE: frozenset({"in_port", "eth_type", "ip_proto", "icmpv6_type"}),
}

# Which tables a table may continue to.
NEXT_TABLES: dict[Table, frozenset[Table]] = {
    Table.INGRESS: frozenset({Table.POLICY}),
    Table.POLICY: frozenset({Table.PUNT}),
    Table.PUNT: frozenset({Table.FIB4, Table.FIB6, Table.PUNT_POLICE}),
    Table.FIB4: frozenset(),
    Table.FIB6: frozenset(),
    Table.PUNT_POLICE: frozenset(),
}

# Every flow taprouter installs carries a cookie whose top 16 bits say "taprouter",
# so read-back after a restart can tell its flows from anyone else's.
COOKIE_MAGIC = 0x7A70 << 48
COOKIE_MASK = 0xFFFF << 48


class Owner(IntEnum):
    PORT = 1  # ingress and punt flows derived from a port and its addresses
    ROUTE = 2  # FIB entries derived from kernel routes and neighbours
    PIPELINE = 3  # fixed flows: FIB table-miss to the kernel, punt-to-FIB hand-over
    POLICY = 4  # an operator's policy, its id in the cookie's low 32 bits
    # Ingress drops counted per port (its number in the cookie's low 32 bits), on routers with VLANs:
    UNKNOWN_VLAN = 6  # a tag for a VLAN the port does not carry
    DOUBLE_TAGGED = 7  # an 802.1Q tag around another tag (0x8100 or 0x88a8)


# Both drop owners under one cookie and mask, so one flow-stats request reads them all.
DROP_COOKIE_MASK = COOKIE_MASK | 0xFFFE << 32
DROP_REASONS = {6: "unknown_vlan", 7: "double_tagged"}  # Owner -> the reason label in /metrics and status


def drop_cookie(owner: "Owner", port: int) -> int:
    return cookie(owner) | port


def policy_cookie(policy_id: int) -> int:
    return cookie(Owner.POLICY) | policy_id


def owner_of(flow_cookie: int) -> int:
    """The Owner field of one of our cookies."""
    return flow_cookie >> 32 & 0xFFFF


# Groups are owned by range: taprouter never touches a group outside its two. The FIB's hop sets
# have the first, policies that forward to a next hop the second.
GROUP_MIN = 0x7A700000
GROUP_MAX = 0x7A7FFFFF
POLICY_GROUP_MIN = 0x7A600000
POLICY_GROUP_MAX = 0x7A6FFFFF

OFPFF_SEND_FLOW_REM = 1  # a flow with a timeout reports its end: a policy expired

# Control-plane policing. The relay carries some thousands of frames per second to the
# kernel; routing protocol traffic is never metered (BGP keepalives must not starve). The rest
# of what the router must see is policed per ingress port, in two classes, so that one host's
# flood costs only its own port: the punt table sends those frames to PUNT_POLICE, which meters
# them by in_port and class. FIB misses (the slow path) share one meter.
SLOW_PATH_METER = 1  # FIB misses and unresolved next hops: the kernel forwards them
PUNT_METER = 2  # a frame in PUNT_POLICE from a port without meters of its own (its miss)
METERS: dict[int, MeterSpec] = {SLOW_PATH_METER: MeterSpec.pps(2000), PUNT_METER: MeterSpec.pps(1000)}
# Per port: ARP and IPv6 ND/RA/MLD (resolve), and everything else addressed to the router (local).
PORT_RESOLVE_RATE, PORT_LOCAL_RATE = 300, 1000  # packets/s
PORT_METER_MIN, PORT_METER_MAX = 0x10000, 0x3FFFF  # Open vSwitch 3.1 refuses ids above 262,144
FORMER_METERS = frozenset({3})  # ARP and ND shared by every port, before per-port policing: deleted when read back
POLICY_METER_MIN, POLICY_METER_MAX = 0x100, 0xFFFF  # one per policy that polices



def port_meters(port: int) -> tuple[int, int] | None:
    """The (resolve, local) meter ids of a port, or None if its number leaves the range."""
    resolve = PORT_METER_MIN + 2 * port
    return (resolve, resolve + 1) if resolve + 1 <= PORT_METER_MAX else None


def meters_for(ports: Iterable[int]) -> dict[int, MeterSpec]:
    """The punt meters a router with these switch ports needs (policies' meters aside)."""
    meters = dict(METERS)
    for port in ports:
        ids = port_meters(port)
        if ids is not None:
            meters[ids[0]], meters[ids[1]] = MeterSpec.pps(PORT_RESOLVE_RATE), MeterSpec.pps(PORT_LOCAL_RATE)
    return meters


def is_punt_meter(meter_id: int) -> bool:
    return meter_id in METERS or meter_id in FORMER_METERS or PORT_METER_MIN <= meter_id <= PORT_METER_MAX


def meter_name(meter_id: int) -> str:
    """A punt meter's name in /metrics: slow_path, punt, or resolve_portN / local_portN."""
    if meter_id == SLOW_PATH_METER:
        return "slow_path"
    if meter_id == PUNT_METER:
        return "punt"
    if PORT_METER_MIN <= meter_id <= PORT_METER_MAX:
        offset = meter_id - PORT_METER_MIN
        return f"{'local' if offset & 1 else 'resolve'}_port{offset >> 1}"
    return str(meter_id)


# Priorities in the punt table: routing protocols above neighbour discovery above the router's
# own addresses above link-scope multicast; the hand-over to the FIBs is below them all.
PRIO_PROTOCOL = 400  # routing protocols: never metered
PRIO_ND = 300
PRIO_LOCAL = 200
PRIO_MULTICAST = 150
PRIO_TO_FIB = 1

# Priorities in the policy table, bands from the top: the ICMPv6 the router needs to stay
# reachable (ND, RA, MLD) goes on whatever a policy says; policies that also filter traffic to the
# router (to_router); the router's own traffic, as the punt table punts it, goes on untouched; the
# policies of routed traffic; and the miss, on to the punt table. A policy's priority (0-999) is
# added to its band's base.
PRIO_POLICY_GUARD = 5000
PRIO_POLICY_TO_ROUTER = 3000
PRIO_POLICY_OWN = 2000  # + the punt flow's own priority
PRIO_POLICY_ROUTED = 1000

# In the FIB tables the longest prefix wins: priority = base + prefix length; a miss (priority 0)
# goes to the kernel.
FIB_PRIORITY_BASE = 10
KERNEL = 0  # a route flow's target when the kernel forwards: the metered flow to the controller


def owns_group(group_id: int) -> bool:
    return GROUP_MIN <= group_id <= GROUP_MAX or POLICY_GROUP_MIN <= group_id <= POLICY_GROUP_MAX


def owns_meter(meter_id: int) -> bool:
    return is_punt_meter(meter_id) or POLICY_METER_MIN <= meter_id <= POLICY_METER_MAX


def cookie(owner: Owner) -> int:
    return COOKIE_MAGIC | (int(owner) << 32)


def is_ours(flow_cookie: int) -> bool:
    return flow_cookie & COOKIE_MASK == COOKIE_MAGIC


class SchemaError(ValueError):
    pass


def check(flow: Flow) -> Flow:
    """Raise SchemaError if a flow does not fit its table's declaration."""
    try:
        table = Table(flow.table)
    except ValueError:
        raise SchemaError(f"flow in undeclared table {flow.table}: {flow}") from None
    extra = {f.name for f in flow.match.fields} - TABLE_FIELDS[table]
    if extra:
        raise SchemaError(f"table {table.name} does not match on {sorted(extra)}: {flow}")
    if flow.goto is not None and flow.goto not in NEXT_TABLES[table]:
        raise SchemaError(f"table {table.name} cannot go to table {flow.goto}: {flow}")
    if not is_ours(flow.cookie):
        raise SchemaError(f"flow without a taprouter cookie: {flow}")
    return flow


def route_flow(pk: int, target: int) -> Flow:
    """The flow for one FIB entry (a packed prefix): to group `target`, or to the kernel when target
    is KERNEL. wire.encode_routes writes the same bytes from templates, and readback reads them."""
    length = prefix.length(pk)
    if prefix.is_v6(pk):
        table, eth_type, name, bits = Table.FIB6, ETH_TYPE_IPV6, "ipv6_dst", 128
    else:
        table, eth_type, name, bits = Table.FIB4, ETH_TYPE_IPV4, "ipv4_dst", 32
    fields = [exact("eth_type", eth_type)]
    if length:
        fields.append(FieldMatch(name, prefix.value(pk), prefix.mask(pk) if length < bits else None))
    if target == KERNEL:
        actions, meter = (to_controller(),), SLOW_PATH_METER
    else:
        actions, meter = (ToGroup(target),), None
    return Flow(int(table), FIB_PRIORITY_BASE + length, Match.of(*fields), actions=actions, meter=meter,
                cookie=cookie(Owner.ROUTE))
