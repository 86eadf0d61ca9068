"""Typed kernel routing state: links, routes, next hops and neighbours, as the mirror keeps them."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Neighbour states (linux/neighbour.h) in which the kernel has a usable MAC.
NUD_INCOMPLETE = 0x01
NUD_REACHABLE = 0x02
NUD_STALE = 0x04
NUD_DELAY = 0x08
NUD_PROBE = 0x10
NUD_FAILED = 0x20
NUD_NOARP = 0x40
NUD_PERMANENT = 0x80
NUD_VALID = NUD_REACHABLE | NUD_STALE | NUD_DELAY | NUD_PROBE | NUD_NOARP | NUD_PERMANENT


class RouteKind(Enum):
    UNICAST = "unicast"
    OTHER = "other"  # blackhole, unreachable, prohibit, ...: the kernel must decide


@dataclass(frozen=True)
class Link:
    index: int
    name: str
    up: bool
    carrier: bool


@dataclass(frozen=True, order=True)
class NextHop:
    ifindex: int
    gateway: IPAddress | None  # None: the destination is on the link itself
    weight: int = 1
    linkdown: bool = False


@dataclass(frozen=True)
class RouteKey:
    """The kernel keys a route by destination and metric (within the main table)."""

    dst: IPNetwork
    metric: int


@dataclass(frozen=True)
class Route:
    dst: IPNetwork
    metric: int
    kind: RouteKind
    nexthops: tuple[NextHop, ...]

    @property
    def key(self) -> RouteKey:
        return RouteKey(self.dst, self.metric)


@dataclass(frozen=True, order=True)
class NeighbourKey:
    """Orders within one address family; mixed families sort by repr (see controller.groups)."""

    ifindex: int
    ip: IPAddress


@dataclass(frozen=True)
class Neighbour:
    ifindex: int
    ip: IPAddress
    mac: int | None
    state: int

    @property
    def key(self) -> NeighbourKey:
        return NeighbourKey(self.ifindex, self.ip)

    @property
    def resolved(self) -> bool:
        return self.mac is not None and bool(self.state & NUD_VALID)


@dataclass(frozen=True, order=True)
class Address:
    ifindex: int
    interface: ipaddress.IPv4Interface | ipaddress.IPv6Interface


@dataclass(frozen=True)
class KernelState:
    """An immutable snapshot of the mirror, handed to the planner."""

    links: dict[int, Link]
    neighbours: dict[NeighbourKey, Neighbour]
    addresses: frozenset[Address] = frozenset()

    def link_by_name(self, name: str) -> Link | None:
        for link in self.links.values():
            if link.name == name:
                return link
        return None


class MirrorChanges(NamedTuple):
    """What changed in the kernel mirror since the reconciler last asked (KernelMirror.take_changes)."""

    routes: dict[int, tuple]  # changed prefix with a route -> its entry as of its last change
    other: bool  # links, neighbours or addresses changed
    full: bool  # replan everything (a new mirror, a fresh dump)
    withdrawn: bool  # some route was deleted (a prefix lost its route, or one of its metrics)
    # Prefixes that lost their last route, in order, perhaps more than once; one also in `routes`
    # came back since. A list, not None entries in `routes`: a withdrawal's million cost an append
    # each rather than an insert into a growing dict.
    gone: list[int]
