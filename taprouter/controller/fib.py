"""Plans the FIB: kernel routes and neighbours in, route entries and next-hop groups out; pure.

A resolved next hop is an indirect group (decrement TTL, rewrite MACs,
output), so a neighbour's MAC change rewrites one group, not every route.
ECMP is a select group. Anything the switch cannot forward on its own, such
as an unresolved next hop, a connected subnet without a neighbour entry, or
a route the kernel must judge, goes to the kernel through the controller.
"""

from __future__ import annotations

import ipaddress
import zlib
from dataclasses import dataclass, field
from enum import Enum

from ..routing.model import KernelState, NeighbourKey, NextHop, Route, RouteKind
from .flows import Action, DecTtl, Output, SetField

# Open vSwitch deletes flows that share a group in time quadratic in their
# number; no group carries more than this many routes (DESIGN.md, "Groups").
ROUTES_PER_GROUP = 1024


@dataclass(frozen=True)
class PortBinding:
    """A TAP the kernel routes over, and the switch port it stands for."""

    ifindex: int
    port: int
    mac: int
    up: bool = True


class GroupType(Enum):
    INDIRECT = "indirect"
    SELECT = "select"


@dataclass(frozen=True, order=True)
class Bucket:
    weight: int
    actions: tuple[Action, ...]


@dataclass(frozen=True, order=True)
class GroupSpec:
    type: GroupType
    buckets: tuple[Bucket, ...]


@dataclass(frozen=True, order=True)
class GroupKey:
    """What a group means: its next hops (with weights) and its shard."""

    members: tuple[tuple[NeighbourKey, int], ...]
    shard: int = 0


class Punt(Enum):
    KERNEL = "kernel"


Target = GroupKey | Punt


@dataclass(frozen=True)
class FibPlan:
    routes: dict[ipaddress.IPv4Network | ipaddress.IPv6Network, Target]
    groups: dict[GroupKey, GroupSpec]
    unresolved: frozenset[NeighbourKey] = field(default_factory=frozenset)


def _hop_actions(port: PortBinding, mac: int) -> tuple[Action, ...]:
    # TTL first: when it expires, Open vSwitch sends the frame to the controller
    # as it arrived (still addressed to the router), and the kernel answers it.
    # in_port cleared: OpenFlow never outputs to the ingress port, and a route may lead back
    # out of it (hosts whose gateway is us, behind another router on the same port).
    return (DecTtl(), SetField("eth_src", port.mac), SetField("eth_dst", mac), SetField("in_port_nxm", 0),
            Output(port.port))


def _best_routes(state: KernelState) -> dict:
    best: dict = {}
    for route in state.routes.values():
        current = best.get(route.dst)
        if current is None or route.metric < current.metric:
            best[route.dst] = route
    return best


def _connected(state: KernelState, best: dict, ports: dict[int, PortBinding]):
    """Connected prefixes per interface, for deciding which neighbours are directly routed."""
    result: dict[int, list] = {}
    for route in best.values():
        if route.kind is RouteKind.UNICAST and len(route.nexthops) == 1:
            nh = route.nexthops[0]
            if nh.gateway is None and nh.ifindex in ports and ports[nh.ifindex].up and not nh.linkdown:
                result.setdefault(nh.ifindex, []).append(route.dst)
    return result


def _members(route: Route, state: KernelState, ports: dict[int, PortBinding],
             unresolved: set[NeighbourKey]) -> tuple[tuple[NeighbourKey, int], ...] | None:
    """The resolved next hops of a route, or None when the kernel must forward it."""
    if route.kind is not RouteKind.UNICAST or not route.nexthops:
        return None
    members = []
    for nh in route.nexthops:
        if nh.linkdown:
            continue
        port = ports.get(nh.ifindex)
        if port is None or not port.up or nh.gateway is None or nh.gateway.version != route.dst.version:
            return None  # off the switch, a connected subnet, or IPv4 via IPv6: the kernel's job
        key = NeighbourKey(nh.ifindex, nh.gateway)
        neighbour = state.neighbours.get(key)
        if neighbour is None or not neighbour.resolved:
            unresolved.add(key)
            continue
        members.append((key, nh.weight))
    return tuple(sorted(members)) or None


def _shadowed(ip, net, best: dict) -> bool:
    """Whether a route more specific than the connected subnet net (short of the host route) covers ip."""
    return any(ipaddress.ip_network((ip, length), strict=False) in best
               for length in range(net.prefixlen + 1, ip.max_prefixlen))


def _hash(dst) -> int:
    return zlib.crc32(dst.network_address.packed + bytes([dst.prefixlen]))


def _shards(dsts: list) -> dict:
    """A shard per destination of one next-hop set: placed by hash, so a route keeps its shard while
    others come and go, but moved on to the next shard with room, so none holds more than
    ROUTES_PER_GROUP."""
    if len(dsts) <= ROUTES_PER_GROUP:
        return dict.fromkeys(dsts, 0)
    shards = 1 << ((len(dsts) - 1) // ROUTES_PER_GROUP).bit_length()
    load = [0] * shards
    result = {}
    for h, dst in sorted((_hash(d), d) for d in dsts):
        shard = h & (shards - 1)
        while load[shard] >= ROUTES_PER_GROUP:
            shard = (shard + 1) & (shards - 1)
        load[shard] += 1
        result[dst] = shard
    return result


def plan(state: KernelState, ports: dict[int, PortBinding]) -> FibPlan:
    best = _best_routes(state)
    unresolved: set[NeighbourKey] = set()
    routed: dict = {}
    for dst, route in best.items():
        members = _members(route, state, ports, unresolved)
        routed[dst] = Punt.KERNEL if members is None else members
    connected = _connected(state, best, ports)
    for neighbour in state.neighbours.values():
        host = ipaddress.ip_network(neighbour.ip)
        if (not neighbour.resolved or neighbour.ip.is_link_local or neighbour.ip.is_multicast
                or host in routed or neighbour.ifindex not in ports):
            continue
        for net in connected.get(neighbour.ifindex, ()):
            if neighbour.ip in net and not _shadowed(neighbour.ip, net, best):
                routed[host] = ((neighbour.key, 1),)
                break
    by_members: dict = {}
    for dst, members in routed.items():
        if members is not Punt.KERNEL:
            by_members.setdefault(members, []).append(dst)
    shard_of: dict = {}
    for dsts in by_members.values():
        shard_of.update(_shards(dsts))
    routes: dict = {}
    groups: dict[GroupKey, GroupSpec] = {}
    for dst, members in routed.items():
        if members is Punt.KERNEL:
            routes[dst] = Punt.KERNEL
            continue
        key = GroupKey(members, shard_of[dst])
        routes[dst] = key
        if key not in groups:
            groups[key] = _group_spec(members, state, ports)
    return FibPlan(routes, groups, frozenset(unresolved))


def _group_spec(members, state: KernelState, ports: dict[int, PortBinding]) -> GroupSpec:
    buckets = []
    for key, weight in members:
        neighbour = state.neighbours[key]
        buckets.append(Bucket(weight, _hop_actions(ports[key.ifindex], neighbour.mac)))
    if len(buckets) == 1:
        return GroupSpec(GroupType.INDIRECT, (Bucket(0, buckets[0].actions),))
    return GroupSpec(GroupType.SELECT, tuple(sorted(buckets)))


__all__ = ["Bucket", "FibPlan", "GroupKey", "GroupSpec", "GroupType", "NextHop", "PortBinding",
           "Punt", "plan"]
