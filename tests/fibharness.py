"""The FIB tests' harness: a small kernel described in code, the switch it programs (FibState,
desired.build and diff, applied to the in-memory OpenFlow table in core's order), and packets sent
through it."""

from __future__ import annotations

import dataclasses
import ipaddress
from collections import Counter
from dataclasses import dataclass, field

from oftable import OFTable
from taprouter.controller import desired, pipeline, punt
from taprouter.controller.backlog import Backlog
from taprouter.controller.sending import split_deletes
from taprouter.controller.fib import GroupSpec, PortBinding
from taprouter.controller.fibstate import PUNT, FibState
from taprouter.controller.flows import ETH_TYPE_IPV4, ETH_TYPE_IPV6, Flow, ToGroup, mac_to_int
from taprouter.controller.reconcile import FlowOp, GroupOp, Op, diff
from taprouter.routing import prefix as pfx
from taprouter.routing.model import (NUD_REACHABLE, Address, KernelState, Link, Neighbour, NeighbourKey, NextHop,
                                     Route, RouteKey, RouteKind)

IPPROTO_UDP = 17
HOST_MAC = mac_to_int("02:00:00:00:00:10")
KERNEL = "kernel"
EXPIRED = "ttl-expired"
OTHER = RouteKind.OTHER


@dataclass(frozen=True)
class Port:
    """A switch port and the TAP the kernel routes over for it."""

    ifindex: int
    number: int
    mac: int
    addresses: tuple[str, ...]
    up: bool = True

    @property
    def name(self) -> str:
        return f"tap{self.number}"


P1 = Port(11, 1, mac_to_int("0e:00:00:00:00:01"), ("10.0.1.1/24", "2001:db8:1::1/64"))
P2 = Port(12, 2, mac_to_int("0e:00:00:00:00:02"), ("10.0.2.1/24", "2001:db8:2::1/64"))
P3 = Port(13, 3, mac_to_int("0e:00:00:00:00:03"), ("10.0.3.1/24", "2001:db8:3::1/64"))
HOST = Port(14, 4, mac_to_int("0e:00:00:00:00:04"), ("10.0.4.1/24", "2001:db8:4::1/64"))  # test traffic enters here
PORTS = (P1, P2, P3, HOST)
ETH0 = 20  # a kernel interface that is not on the switch

GW1, GW2, GW3 = "10.0.1.2", "10.0.2.2", "10.0.3.2"
GW1_6, GW2_6, GW3_6 = "fe80::1:2", "fe80::2:2", "fe80::3:2"
MAC1, MAC2, MAC3 = (mac_to_int(f"02:00:00:00:0{i}:02") for i in (1, 2, 3))
MAC_NEW = mac_to_int("02:00:00:00:aa:aa")


def via(gateway: str, port: Port | int, weight: int = 1, linkdown: bool = False) -> NextHop:
    ifindex = port if isinstance(port, int) else port.ifindex
    return NextHop(ifindex, ipaddress.ip_address(gateway), weight, linkdown)


def dev(port: Port | int, linkdown: bool = False) -> NextHop:
    return NextHop(port if isinstance(port, int) else port.ifindex, None, 1, linkdown)


class Kernel:
    """A small declarative kernel: what `ip link`, `ip route` and `ip neigh` would show.

    Each port's addresses bring their connected routes (metric 0 for IPv4, 256 for IPv6), as the
    kernel adds them.
    """

    def __init__(self, ports: tuple[Port, ...] = PORTS, connected: bool = True):
        self.ports: dict[int, Port] = {p.ifindex: p for p in ports}
        self.routes: dict[RouteKey, Route] = {}
        self.neighbours: dict[NeighbourKey, Neighbour] = {}
        if connected:
            for port in ports:
                for text in port.addresses:
                    net = ipaddress.ip_interface(text).network
                    self.route(net, dev(port), metric=0 if net.version == 4 else 256)

    def route(self, dst, *nexthops: NextHop, metric: int | None = None,
              kind: RouteKind = RouteKind.UNICAST) -> "Kernel":
        net = ipaddress.ip_network(dst)
        if metric is None:
            metric = 0 if net.version == 4 else 1024
        hops = () if kind is OTHER else tuple(sorted(nexthops))
        self.routes[RouteKey(net, metric)] = Route(net, metric, kind, hops)
        return self

    def unroute(self, dst, metric: int | None = None) -> "Kernel":
        net = ipaddress.ip_network(dst)
        del self.routes[RouteKey(net, (0 if net.version == 4 else 1024) if metric is None else metric)]
        return self

    def neigh(self, port: Port | int, ip: str, mac: int | None, state: int = NUD_REACHABLE) -> "Kernel":
        ifindex = port if isinstance(port, int) else port.ifindex
        n = Neighbour(ifindex, ipaddress.ip_address(ip), mac, state)
        self.neighbours[n.key] = n
        return self

    def unneigh(self, port: Port | int, ip: str) -> "Kernel":
        ifindex = port if isinstance(port, int) else port.ifindex
        del self.neighbours[NeighbourKey(ifindex, ipaddress.ip_address(ip))]
        return self

    def set_up(self, port: Port, up: bool) -> "Kernel":
        self.ports[port.ifindex] = dataclasses.replace(self.ports[port.ifindex], up=up)
        return self

    def state(self) -> KernelState:
        links = {p.ifindex: Link(p.ifindex, p.name, True, p.up) for p in self.ports.values()}
        links[ETH0] = Link(ETH0, "eth0", True, True)
        addresses = frozenset(Address(p.ifindex, ipaddress.ip_interface(a))
                              for p in self.ports.values() for a in p.addresses)
        return KernelState(links, dict(self.neighbours), addresses)

    def mirror(self) -> dict[int, tuple]:
        """The routes as the mirror keeps them: packed prefix -> (metric, hops, ...), best first."""
        result: dict[int, tuple] = {}
        for route in sorted(self.routes.values(), key=lambda r: (repr(r.dst), r.metric)):
            pk = pfx.from_network(route.dst)
            hops = None if route.kind is OTHER else route.nexthops
            result[pk] = result.get(pk, ()) + (route.metric, hops)
        return result

    def views(self) -> list[punt.PortView]:
        return [punt.PortView(p.number, p.mac, tuple(ipaddress.ip_interface(a) for a in p.addresses))
                for p in self.ports.values()]

    def bindings(self) -> dict[int, PortBinding]:
        return {p.ifindex: PortBinding(p.ifindex, p.number, p.mac, p.up) for p in self.ports.values()}

    def plan(self) -> "Sync":
        """What a fresh daemon would put on an empty switch."""
        return Switch().sync(self)


def gateways(k: Kernel | None = None) -> Kernel:
    """Three gateways, one per port, resolved, in both families."""
    k = k or Kernel()
    for port, gw, gw6, mac in ((P1, GW1, GW1_6, MAC1), (P2, GW2, GW2_6, MAC2), (P3, GW3, GW3_6, MAC3)):
        k.neigh(port, gw, mac).neigh(port, gw6, mac)
    return k


@dataclass(frozen=True)
class Want:
    """What the switch should hold of ours: every flow (route flows included) and every group."""

    flows: frozenset[Flow]
    groups: dict[int, GroupSpec]


@dataclass
class Sync:
    want: Want
    group_upserts: list[GroupOp]
    flow_ops: list[FlowOp]
    group_deletes: list[GroupOp]
    unresolved: frozenset[NeighbourKey]
    targets: dict  # destination network -> group id or PUNT

    @property
    def ops(self) -> list:
        return self.group_upserts + self.flow_ops + self.group_deletes

    def counts(self) -> Counter:
        return Counter(f"{'group' if isinstance(o, GroupOp) else 'flow'}-{o.op.value}" for o in self.ops)


def owned_groups(table: OFTable) -> dict[int, GroupSpec]:
    """What core reads back: groups in taprouter's id range only."""
    return {gid: spec for gid, spec in table.groups.items() if pipeline.owns_group(gid)}


ROUTE_COOKIE = pipeline.cookie(pipeline.Owner.ROUTE)


def read_back(table: OFTable) -> tuple[dict[int, int], frozenset[Flow]]:
    """What core reads back: route flows in the form taprouter writes them as prefix -> target,
    everything else as flows (readback.decode_all does this on the wire; tests/test_readback.py)."""
    routes, others = {}, set()
    for flow in table.snapshot():
        dst = [m for m in flow.match.fields if m.name in ("ipv4_dst", "ipv6_dst")]
        if flow.cookie == ROUTE_COOKIE and flow.table in (2, 3):
            version = 4 if flow.table == 2 else 6
            bits = 32 if version == 4 else 128
            length = 0 if not dst else bits if dst[0].mask is None else bin(dst[0].mask).count("1")
            pk = pfx.pack(version, dst[0].value if dst else 0, length)
            for target in [PUNT] + [a.group_id for a in flow.actions if isinstance(a, ToGroup)]:
                if desired.route_flow(pfx.to_network(pk), target) == flow:
                    routes[pk] = target
                    break
            else:
                others.add(flow)
        else:
            others.add(flow)
    return routes, frozenset(others)


@dataclass
class Switch:
    """The daemon's side of one switch: its FIB state, and the switch it writes to."""

    table: OFTable = field(default_factory=lambda: OFTable(invalid_ttl_to_controller=True))
    fib: FibState | None = None
    seen: tuple = ({}, None)  # the kernel routes and (state, bindings) of the last sync
    passes: list[int] = field(default_factory=list)  # with a backlog: how many prefixes each pass took

    def sync(self, kernel: Kernel, adopt: bool = False, check_restart: bool = True,
             backlog: Backlog | None = None) -> Sync:
        """core._reconcile, step by step: FibState for the routes, diff for the rest; then groups,
        flows, deletes, in core._send's order. With a backlog, as many passes as it takes to
        drain it (the last pass's Sync; `passes` has each one's size)."""
        routes, state, bindings = kernel.mirror(), kernel.state(), kernel.bindings()
        if adopt or self.fib is None:
            self.fib = FibState()
            self.fib.adopt(read_back(self.table)[0], owned_groups(self.table))
            self.seen = ({}, None)
        last_routes, last_other = self.seen
        # As the mirror gives them: changed prefixes with a route, and those that lost theirs.
        dirty = {pk: entry for pk, entry in routes.items() if entry != last_routes.get(pk)}
        gone = [pk for pk in last_routes if pk not in routes]
        other = last_other != (state, bindings)
        self.seen = (routes, (state, bindings))
        if backlog is None:
            return self._pass(kernel, dirty.items(), gone, other, check_restart)
        # As the mirror says: whether some prefix lost a route (at any metric).
        backlog.add(dirty, gone, any(not set(last_routes.get(pk, ())[::2]) <= set((routes.get(pk) or ())[::2])
                                     for pk in dirty.keys() | gone))
        self.passes = []
        while True:
            part, part_gone = backlog.take()
            self.passes.append(len(part) + len(part_gone))
            done = not len(backlog)
            result = self._pass(kernel, part, part_gone, other, check_restart and done)
            if done:
                return result
            other = False

    def _pass(self, kernel: Kernel, changed, gone: list, other: bool, check_restart: bool) -> Sync:
        routes, state, bindings = kernel.mirror(), kernel.state(), kernel.bindings()
        installed_others = read_back(self.table)[1]
        changes = self.fib.sync(routes, state, bindings, changed, other, full=False, gone=gone)
        # The log's figures are counted where the ops are made: they must agree with the ops.
        assert changes.counts == tuple(sum(1 for op, _pk, _t in changes.routes if op is kind)
                                       for kind in (Op.ADD, Op.MODIFY, Op.DELETE))
        others = desired.build(kernel.views(), with_fib=True)
        flow_ops = diff(others, installed_others)
        route_ops = [FlowOp(op, desired.route_flow(pfx.to_network(pk), target)) for op, pk, target in changes.routes]
        early, late = split_deletes(flow_ops)
        self.table.apply(changes.group_upserts)
        self.table.apply(early + route_ops + late)
        self.table.apply(changes.group_deletes)
        route_flows = {desired.route_flow(pfx.to_network(pk), target)
                       for pk, target in ((pk, t if type(t) is int else PUNT) for pk, t in self.fib.flows.items())}
        want = Want(others | route_flows, dict(self.fib.switch_groups))
        assert {f for f in self.table.snapshot() if pipeline.is_ours(f.cookie)} == want.flows
        assert owned_groups(self.table) == want.groups
        if check_restart:
            # Incremental and from scratch agree: a daemon restarted now changes nothing.
            fresh = FibState()
            fresh.adopt(read_back(self.table)[0], owned_groups(self.table))
            assert not fresh.sync(routes, state, bindings, (), True, True), "a restart would change things"
        targets = {pfx.to_network(pk): (t if type(t) is int else PUNT) for pk, t in self.fib.flows.items()}
        return Sync(want, changes.group_upserts, early + route_ops + late, changes.group_deletes,
                    self.fib.unresolved, targets)

    def send(self, dst: str, **kw):
        return fate(self.table, packet(dst, **kw))


def installed(kernel: Kernel) -> Switch:
    sw = Switch()
    sw.sync(kernel)
    return sw


def packet(dst: str, ttl: int = 64, sport: int = 1000, in_port: Port = HOST) -> dict[str, int]:
    ip = ipaddress.ip_address(dst)
    pkt = {"in_port": in_port.number, "eth_src": HOST_MAC, "eth_dst": in_port.mac, "ip_proto": IPPROTO_UDP,
           "udp_src": sport, "udp_dst": 53, "ttl": ttl}
    if ip.version == 4:
        pkt.update(eth_type=ETH_TYPE_IPV4, ipv4_src=int(ipaddress.ip_address("10.0.4.50")), ipv4_dst=int(ip))
    else:
        pkt.update(eth_type=ETH_TYPE_IPV6, ipv6_src=int(ipaddress.ip_address("2001:db8:4::50")),
                   ipv6_dst=int(ip))
    return pkt


PORT_MAC = {p.number: p.mac for p in PORTS}


def fate(table: OFTable, pkt: dict[str, int]):
    """KERNEL, EXPIRED, or (port number, next-hop MAC), checking everything else about the packet.

    Forwarded: exactly one copy, eth_src rewritten to the egress port's MAC, TTL one less, nothing
    else changed, nothing to the controller. To the kernel: the packet as it arrived, and only that.
    """
    result = table.process(pkt)
    if result.ttl_expired:
        assert result.controller_packets == (pkt,) and not result.outputs, result
        return EXPIRED
    if result.to_controller:
        assert result.controller_packets == (pkt,) and not result.outputs, result
        return KERNEL
    assert len(result.outputs) == 1, result
    out = result.outputs[0]
    expected = dict(pkt, eth_src=PORT_MAC[out.port], eth_dst=out.packet["eth_dst"], ttl=pkt["ttl"] - 1)
    # in_port is pipeline metadata, not on the wire: a bucket may rewrite it (see the hairpin test).
    assert dict(out.packet, in_port=None) == dict(expected, in_port=None), result
    return (out.port, out.packet["eth_dst"])


def group_of(sw: Switch, dst: str) -> GroupSpec:
    """The group the route flow for dst names."""
    net = ipaddress.ip_network(dst)
    (flow,) = [f for f in sw.table.snapshot() if f.key == desired.route_flow(net, PUNT).key]
    (action,) = flow.actions
    return sw.table.groups[action.group_id]


def flows_per_group(flows) -> Counter:
    return Counter(a.group_id for f in flows for a in f.actions if isinstance(a, ToGroup))
