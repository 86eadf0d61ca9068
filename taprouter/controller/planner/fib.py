"""What the FIB means: next-hop sets, their groups and host entries; pure functions.

A route whose next hops are all gateways on switch ports becomes a flow to a
group for its *hop set* (next hops with weights). The group holds a bucket
per usable hop (port up, neighbour resolved: decrement TTL, rewrite MACs,
output), so a neighbour's MAC change, or one ECMP member failing, rewrites
groups, not routes. Anything the switch cannot forward on its own, such as a
connected subnet without a neighbour entry, a hop set with no usable member,
or a route the kernel must judge, goes to the kernel through the controller.

fibstate.py applies these incrementally; taprouter.prefix packs the
destinations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from ... import prefix
from ...routing.model import KernelState, NeighbourKey, NextHop
from ..openflow.flows import OFPVID_PRESENT, Action, DecTtl, Output, PopVlan, PushVlan, SetField
from ..openflow.groups import Bucket, GroupSpec, GroupType
from ..openflow.pipeline import KERNEL

# Open vSwitch deletes flows that share a group in time quadratic in their
# number; no group carries more than this many routes (DESIGN.md, "Groups").
ROUTES_PER_GROUP = 1024

# A route's hop set: its next hops on switch ports, as (neighbour, weight), sorted.
HopSet = tuple[tuple[NeighbourKey, int], ...]


@dataclass(frozen=True)
class PortBinding:
    """A TAP the kernel routes over, and the switch port it stands for."""

    ifindex: int
    port: int
    mac: int
    up: bool = True
    # None: the router has no VLANs, frames keep whatever they came with (as before VLANs); 0: the
    # port's untagged TAP; else the VLAN's id.
    vid: int | None = None


def tag_actions(vid: int | None) -> tuple[Action, ...]:
    """What leaves a bucket tagged for `vid`. A bucket cannot know whether its packet came in tagged,
    so on a router with VLANs it always pops (a no-op on an untagged packet) and pushes afresh:
    push, rewrite and pop alike, and the priority bits (PCP) are reset to 0."""
    if vid is None:
        return ()
    if vid == 0:
        return (PopVlan(),)
    return (PopVlan(), PushVlan(), SetField("vlan_vid", OFPVID_PRESENT | vid))


def hop_actions(port: PortBinding, mac: int) -> tuple[Action, ...]:
    # TTL first: when it expires, Open vSwitch sends the frame to the controller
    # as it arrived (still addressed to the router, still tagged), and the kernel answers it.
    # in_port cleared: OpenFlow never outputs to the ingress port, and a route may lead back
    # out of it (hosts whose gateway is us, behind another router on the same port; another VLAN
    # on the same trunk, router on a stick).
    return (DecTtl(), *tag_actions(port.vid), SetField("eth_src", port.mac), SetField("eth_dst", mac),
            SetField("in_port_nxm", 0), Output(port.port))


def classify(hops: tuple[NextHop, ...] | None, v6: bool, ports: Mapping[int, PortBinding]) -> HopSet | int:
    """The hop set of a route with these next hops, or pipeline.KERNEL when the switch cannot forward it.

    Next hops the kernel marks linkdown are left out. A hop off the switch, a connected
    subnet (no gateway) or a gateway of the other family (IPv4 via IPv6) makes it the kernel's.
    """
    if not hops:
        return KERNEL
    version = 6 if v6 else 4
    members = []
    for nh in hops:
        if nh.linkdown:
            continue
        if nh.ifindex not in ports or nh.gateway is None or nh.gateway.version != version:
            return KERNEL
        members.append((NeighbourKey(nh.ifindex, nh.gateway), nh.weight))
    return tuple(sorted(members)) or KERNEL


def group_spec(hopset: HopSet, state: KernelState, ports: Mapping[int, PortBinding]) -> GroupSpec | None:
    """The group for a hop set: a bucket per usable member; None when no member is usable."""
    buckets = []
    for key, weight in hopset:
        port = ports.get(key.ifindex)
        neighbour = state.neighbours.get(key)
        if port is None or not port.up or neighbour is None or not neighbour.resolved:
            continue
        buckets.append(Bucket(weight, hop_actions(port, neighbour.mac)))
    if not buckets:
        return None
    if len(hopset) == 1:
        return GroupSpec(GroupType.INDIRECT, (Bucket(0, buckets[0].actions),))
    return GroupSpec(GroupType.SELECT, tuple(sorted(buckets)))


def unresolved(hopset: HopSet, state: KernelState, ports: Mapping[int, PortBinding]) -> set[NeighbourKey]:
    """Members on an up port whose neighbour the kernel has not resolved."""
    result = set()
    for key, _ in hopset:
        port = ports.get(key.ifindex)
        neighbour = state.neighbours.get(key)
        if port is not None and port.up and (neighbour is None or not neighbour.resolved):
            result.add(key)
    return result


def is_connected(hops: tuple[NextHop, ...] | None) -> bool:
    """A connected subnet: one next hop, no gateway, carrier on."""
    return bool(hops) and len(hops) == 1 and hops[0].gateway is None and not hops[0].linkdown


def host_entries(state: KernelState, ports: Mapping[int, PortBinding], connected: Mapping[int, int],
                 routes: Mapping[int, tuple]) -> dict[int, tuple]:
    """A host route for each resolved neighbour in a connected subnet on an up switch port, as the
    mirror's entry of a route via that neighbour would be: (metric 0, (next hop,)).

    `connected` maps connected prefixes to their ifindex. A neighbour is skipped when the
    kernel has a route for exactly its address (the kernel's route wins), or a route more
    specific than the subnet covers it (the neighbour is not where traffic to it goes).
    """
    nets: dict[int, list[int]] = {}
    for pk, ifindex in connected.items():
        port = ports.get(ifindex)
        if port is not None and port.up:
            nets.setdefault(ifindex, []).append(pk)
    result: dict[int, tuple] = {}
    if not nets:
        return result
    for neighbour in state.neighbours.values():
        candidates = nets.get(neighbour.ifindex)
        ip = neighbour.ip
        if not candidates or not neighbour.resolved or ip.is_link_local or ip.is_multicast:
            continue
        bits = ip.max_prefixlen
        host = prefix.pack(ip.version, int(ip), bits)
        if host in routes:
            continue
        for net in candidates:
            if prefix.contains(net, host) and not _shadowed(int(ip), ip.version, prefix.length(net), routes):
                result[host] = (0, (NextHop(neighbour.ifindex, ip),))
                break
    return result


def _shadowed(value: int, version: int, net_length: int, routes: Mapping[int, tuple]) -> bool:
    """Whether a route longer than the connected subnet, short of the host route, covers value."""
    bits = 32 if version == 4 else 128
    for length in range(net_length + 1, bits):
        masked = value >> (bits - length) << (bits - length)
        if prefix.pack(version, masked, length) in routes:
            return True
    return False
