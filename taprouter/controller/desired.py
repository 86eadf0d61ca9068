"""Puts the punt plan and the FIB plan together into the flows and groups a switch should hold."""

from __future__ import annotations

from dataclasses import dataclass

from . import pipeline, punt
from .fib import FibPlan, GroupKey, GroupSpec, Punt
from .flows import ETH_TYPE_IPV4, ETH_TYPE_IPV6, Flow, Match, ToGroup, exact, prefix, to_controller
from .pipeline import Owner, Table

FIB_PRIORITY_BASE = 10  # priority = base + prefix length: longest prefix wins


@dataclass(frozen=True)
class Desired:
    flows: frozenset[Flow]
    groups: dict[int, GroupSpec]


def _fixed_flows() -> list[Flow]:
    """The hand-over from the punt table to the FIBs, and each FIB's miss to the kernel."""
    cookie = pipeline.cookie(Owner.PIPELINE)
    flows = []
    for eth_type, table in ((ETH_TYPE_IPV4, Table.FIB4), (ETH_TYPE_IPV6, Table.FIB6)):
        flows.append(Flow(int(Table.PUNT), 1, Match.of(exact("eth_type", eth_type)), goto=int(table),
                          cookie=cookie))
        flows.append(Flow(int(table), 0, Match(), actions=(to_controller(),),
                          meter=pipeline.SLOW_PATH_METER, cookie=cookie))
    return [pipeline.check(f) for f in flows]


def route_flow(dst, target, ids: dict[GroupKey, int]) -> Flow:
    if dst.version == 4:
        table, fields = Table.FIB4, [exact("eth_type", ETH_TYPE_IPV4)]
        if dst.prefixlen:
            fields.append(prefix("ipv4_dst", dst))
    else:
        table, fields = Table.FIB6, [exact("eth_type", ETH_TYPE_IPV6)]
        if dst.prefixlen:
            fields.append(prefix("ipv6_dst", dst))
    if target is Punt.KERNEL:
        actions, meter = (to_controller(),), pipeline.SLOW_PATH_METER
    else:
        actions, meter = (ToGroup(ids[target]),), None
    return Flow(int(table), FIB_PRIORITY_BASE + dst.prefixlen, Match.of(*fields), actions=actions,
                meter=meter, cookie=pipeline.cookie(Owner.ROUTE))


class RouteFlows:
    """Reuses the route flows of the previous plan: most routes did not change since."""

    def __init__(self) -> None:
        self._flows: dict[tuple, Flow] = {}

    def build(self, routes: dict, ids: dict[GroupKey, int]) -> list[Flow]:
        cache: dict[tuple, Flow] = {}
        old = self._flows
        for dst, target in routes.items():
            key = (dst, None if target is Punt.KERNEL else ids[target])
            flow = old.get(key)
            if flow is None:
                flow = route_flow(dst, target, ids)
            cache[key] = flow
        self._flows = cache  # only this plan's entries: withdrawn routes leave the cache
        return list(cache.values())


def build(ports: list[punt.PortView], fib: FibPlan | None, ids: dict[GroupKey, int],
          route_flows: RouteFlows | None = None) -> Desired:
    flows = set(punt.plan(ports))
    groups: dict[int, GroupSpec] = {}
    if fib is not None and ports:
        flows.update(_fixed_flows())
        if route_flows is None:
            flows.update(route_flow(dst, target, ids) for dst, target in fib.routes.items())
        else:
            flows.update(route_flows.build(fib.routes, ids))
        groups = {ids[key]: spec for key, spec in fib.groups.items()}
    return Desired(frozenset(flows), groups)
