"""What the store refuses beyond model.parse, each naming the field: a router not in the config file,
a next hop on none of the router's subnets, and two policies at one priority whose matches overlap
(the switch would apply either). Pure: the store passes in the config and the other policies.
"""

from __future__ import annotations

from collections import defaultdict
from itertools import chain
from typing import Iterable, Iterator, Mapping, Sequence

from ..config import RouterConfig
from .model import IPAddress, IPNetwork, Policy, PolicyError, overlaps

Routers = Mapping[str, RouterConfig]


def router(routers: Routers, name: str, source: object = "the config file") -> RouterConfig:
    found = routers.get(name)
    if found is None:
        known = ", ".join(sorted(routers)) or "none"
        raise PolicyError("router", f"{name!r} is not a router in {source} (routers: {known})")
    return found


def own_addresses(config: RouterConfig) -> frozenset[IPAddress]:
    return frozenset(iface.ip for port in config.taps for iface in port.addresses)


def check_via(policy: Policy, config: RouterConfig) -> None:
    """A FORWARD's next hop must be a neighbour: on the subnet of one of the router's ports."""
    via = policy.via
    if via is None:
        return
    subnets = [(port.label, iface) for port in config.taps for iface in port.addresses
               if iface.version == via.version]
    for number, iface in subnets:
        if via == iface.ip:
            raise PolicyError("via", f"{via} is the router's own address on {number}, not a next hop")
        if via in iface.network:
            return
    listed = ", ".join(f"{iface.network} ({number})" for number, iface in subnets) or "none"
    raise PolicyError("via", f"{via} is on no subnet of router {config.name}'s ports "
                             f"(IPv{via.version} subnets: {listed})")


def check(policy: Policy, config: RouterConfig, others: Iterable[Policy]) -> None:
    """Everything about one policy joining the router's others (its own old version excluded)."""
    check_via(policy, config)
    own = own_addresses(config)
    for other in others:
        if other.name != policy.name and other.priority == policy.priority and overlaps(policy, other, own):
            raise conflict(policy, other)


def conflict(policy: Policy, other: Policy) -> PolicyError:
    return PolicyError("priority", f"{policy.priority} is also the priority of policy {other.name!r} on "
                                   f"router {policy.router}, and their matches overlap: the switch would "
                                   "apply either to the packets both match; give one another priority")


def first_conflict(policies: Sequence[Policy], own: frozenset[IPAddress] = frozenset()
                   ) -> tuple[Policy, Policy] | None:
    """Two of one router's policies at one priority that overlap, or None. Candidates come from an
    index of prefixes, so a large list of disjoint policies is not compared pair by pair."""
    by_priority: dict[int, list[Policy]] = defaultdict(list)
    for policy in policies:
        by_priority[policy.priority].append(policy)
    for group in by_priority.values():
        if len(group) < 2:
            continue
        with_dst = [p for p in group if p.match.dst is not None]
        without_dst = [p for p in group if p.match.dst is None]
        # Pairs that both have a destination meet there; a pair where one has none meets by source.
        candidates = chain(_meeting(with_dst, with_dst, "dst"), _meeting(without_dst, group, "src"))
        for a, b in candidates:
            if a is not b and overlaps(a, b, own):
                return a, b
    return None


def _key(net: IPNetwork) -> tuple[int, int, int]:
    return net.version, net.prefixlen, int(net.network_address)


def _wider(net: IPNetwork, strictly: bool, lengths: Iterable[int]) -> Iterator[tuple[int, int, int]]:
    """The keys of the prefixes of the given lengths that hold `net` (itself too unless strictly)."""
    width, address = net.max_prefixlen, int(net.network_address)
    for length in lengths:
        if length < net.prefixlen or (length == net.prefixlen and not strictly):
            yield net.version, length, address & (((1 << length) - 1) << (width - length))


def _meeting(left: Sequence[Policy], right: Sequence[Policy], field: str) -> Iterator[tuple[Policy, Policy]]:
    """Pairs (x of left, y of right) whose `field` prefixes share an address (no prefix: every
    address), each at least once; x may be y."""
    def indexed(items: Sequence[Policy]) -> tuple[dict, list[Policy]]:
        index: dict[tuple[int, int, int], list[Policy]] = defaultdict(list)
        anywhere = []
        for item in items:
            net = getattr(item.match, field)
            if net is None:
                anywhere.append(item)
            else:
                index[_key(net)].append(item)
        return index, anywhere

    left_index, _ = indexed(left)
    right_index, right_anywhere = indexed(right)
    # Only the lengths some prefix has: 10,000 /32s need one look-up each, not 33.
    left_lengths, right_lengths = {k[1] for k in left_index}, {k[1] for k in right_index}
    for x in left:
        net = getattr(x.match, field)
        if net is None:
            yield from ((x, y) for y in right)
            continue
        yield from ((x, y) for y in right_anywhere)
        for key in _wider(net, False, right_lengths):  # y's prefix holds x's
            yield from ((x, y) for y in right_index.get(key, ()))
    for y in right:  # x's prefix holds y's (strictly: equal ones were found above)
        net = getattr(y.match, field)
        if net is not None:
            for key in _wider(net, True, left_lengths):
                yield from ((x, y) for x in left_index.get(key, ()))
