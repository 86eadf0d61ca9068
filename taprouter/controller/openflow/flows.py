"""Typed OpenFlow 1.3 flows: match fields, matches, actions and flow entries.

Values are plain integers (MACs and IP addresses too), so the planner and the
in-memory table model in the tests compare them exactly, and only the codecs
(wire, decode) convert them to and from bytes and os-ken's objects.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import Enum

from ...mac import int_to_mac, mac_to_int

OFPP_CONTROLLER = 0xFFFFFFFD
OFPCML_NO_BUFFER = 0xFFFF


class Kind(Enum):
    INT = "int"
    MAC = "mac"
    IPV4 = "ipv4"
    IPV6 = "ipv6"


# The OXM fields the pipeline uses, with their widths in bits.
FIELDS: dict[str, tuple[Kind, int]] = {
    "in_port": (Kind.INT, 32),
    # 12-bit VID and OFPVID_PRESENT (0x1000) in a 16-bit OXM: 0 (OFPVID_NONE) matches untagged frames only.
    "vlan_vid": (Kind.INT, 16),
    "eth_dst": (Kind.MAC, 48),
    "eth_src": (Kind.MAC, 48),
    "eth_type": (Kind.INT, 16),
    "arp_op": (Kind.INT, 16),
    "arp_tpa": (Kind.IPV4, 32),
    "ip_proto": (Kind.INT, 8),
    "ipv4_src": (Kind.IPV4, 32),
    "ipv4_dst": (Kind.IPV4, 32),
    "ipv6_src": (Kind.IPV6, 128),
    "ipv6_dst": (Kind.IPV6, 128),
    "icmpv4_type": (Kind.INT, 8),
    "icmpv6_type": (Kind.INT, 8),
    "tcp_src": (Kind.INT, 16),
    "tcp_dst": (Kind.INT, 16),
    "udp_src": (Kind.INT, 16),
    "udp_dst": (Kind.INT, 16),
    "sctp_src": (Kind.INT, 16),
    "sctp_dst": (Kind.INT, 16),
    # Nicira's 16-bit in_port: Open vSwitch refuses an OpenFlow 1.3 set-field of in_port but
    # takes this one, which a next-hop group needs to send a packet back out of its ingress port.
    "in_port_nxm": (Kind.INT, 16),
}

# Fields only ever written (set-field), never matched on.
SET_ONLY = frozenset({"in_port_nxm"})
MATCH_FIELDS = {name: spec for name, spec in FIELDS.items() if name not in SET_ONLY}

OFPVID_PRESENT = 0x1000
OFPVID_NONE = 0x0000
ETH_TYPE_VLAN = 0x8100
ETH_TYPE_QINQ = 0x88A8
ETH_TYPE_IPV4 = 0x0800
ETH_TYPE_ARP = 0x0806
ETH_TYPE_IPV6 = 0x86DD
IPPROTO_TCP = 6
IPPROTO_OSPF = 89
IPPROTO_ICMPV6 = 58
BGP_PORT = 179


def to_text(name: str, value: int) -> str | int:
    """Convert a field value to the form os-ken's OFPMatch takes."""
    kind = FIELDS[name][0]
    if kind is Kind.MAC:
        return int_to_mac(value)
    if kind is Kind.IPV4:
        return str(ipaddress.IPv4Address(value))
    if kind is Kind.IPV6:
        return str(ipaddress.IPv6Address(value))
    return value


def from_text(name: str, value: str | int) -> int:
    kind = FIELDS[name][0]
    if kind is Kind.MAC:
        return mac_to_int(value)  # type: ignore[arg-type]
    if kind in (Kind.IPV4, Kind.IPV6):
        return int(ipaddress.ip_address(value))
    return int(value)


@dataclass(frozen=True, order=True)
class FieldMatch:
    name: str
    value: int
    mask: int | None = None  # None means exact

    def __post_init__(self) -> None:
        if self.name not in MATCH_FIELDS:
            raise ValueError(f"unknown match field {self.name}")
        width = FIELDS[self.name][1]
        full = (1 << width) - 1
        if self.mask == full:
            object.__setattr__(self, "mask", None)
        if self.mask is not None and self.value & ~self.mask:
            object.__setattr__(self, "value", self.value & self.mask)

    def matches(self, value: int | None) -> bool:
        if value is None:
            return False
        if self.mask is None:
            return value == self.value
        return value & self.mask == self.value


def _by_name(field: FieldMatch) -> str:
    return field.name


@dataclass(frozen=True, order=True)
class Match:
    """A set of field matches, kept sorted so equal matches compare equal."""

    fields: tuple[FieldMatch, ...] = ()

    @staticmethod
    def of(*fields: FieldMatch) -> "Match":
        # A zero mask matches anything; switches read such a field back as absent.
        fields = sorted((f for f in fields if f.mask != 0), key=_by_name)
        for a, b in zip(fields, fields[1:]):
            if a.name == b.name:
                raise ValueError(f"duplicate field {a.name} in match")
        return Match(tuple(fields))

    def matches(self, packet: dict[str, int]) -> bool:
        return all(f.matches(packet.get(f.name)) for f in self.fields)

    def __hash__(self) -> int:
        try:
            return self.__dict__["_hash"]
        except KeyError:
            value = hash(self.fields)
            object.__setattr__(self, "_hash", value)
            return value


def exact(name: str, value: int) -> FieldMatch:
    return FieldMatch(name, value)


def prefix_match(name: str, network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> FieldMatch:
    width = FIELDS[name][1]
    mask = ((1 << network.prefixlen) - 1) << (width - network.prefixlen)
    return FieldMatch(name, int(network.network_address), mask)


@dataclass(frozen=True, order=True)
class Output:
    port: int
    max_len: int = 0


@dataclass(frozen=True, order=True)
class SetField:
    name: str
    value: int


@dataclass(frozen=True, order=True)
class DecTtl:
    pass


@dataclass(frozen=True, order=True)
class ToGroup:
    group_id: int


@dataclass(frozen=True, order=True)
class PushVlan:
    """A new outer 802.1Q tag (VID 0, PCP 0 until a set-field of vlan_vid)."""

    ethertype: int = ETH_TYPE_VLAN


@dataclass(frozen=True, order=True)
class PopVlan:
    """The outer tag off; Open vSwitch does nothing to an untagged frame."""


Action = Output | SetField | DecTtl | ToGroup | PushVlan | PopVlan


def to_controller() -> Output:
    return Output(OFPP_CONTROLLER, OFPCML_NO_BUFFER)


@dataclass(frozen=True, order=True)
class Flow:
    """One flow entry; (table, priority, match) is its identity on the switch. No actions and no
    goto drops the frame."""

    table: int
    priority: int
    match: Match
    actions: tuple[Action, ...] = ()
    goto: int | None = None
    meter: int | None = None
    cookie: int = 0
    idle_timeout: int = 0  # seconds; 0: none
    hard_timeout: int = 0
    flags: int = 0  # OFPFF_*: pipeline.OFPFF_SEND_FLOW_REM on a flow whose end must be reported

    @property
    def key(self) -> tuple[int, int, Match]:
        return (self.table, self.priority, self.match)

    def __hash__(self) -> int:
        # Flows live in sets of up to a million, hashed on every diff: compute once.
        try:
            return self.__dict__["_hash"]
        except KeyError:
            value = hash((self.table, self.priority, self.match, self.actions, self.goto, self.meter,
                          self.cookie, self.idle_timeout, self.hard_timeout, self.flags))
            object.__setattr__(self, "_hash", value)
            return value
