"""The flows a switch should hold besides the route flows, and the form of a route flow."""

from __future__ import annotations

from . import pipeline, punt
from .flows import ETH_TYPE_IPV4, ETH_TYPE_IPV6, Flow, Match, ToGroup, exact, prefix, to_controller
from .pipeline import Owner, Table

FIB_PRIORITY_BASE = 10  # priority = base + prefix length: longest prefix wins

PUNT = 0  # a route flow's target when the kernel must forward (fibstate.PUNT)


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


def route_flow(dst, target: int) -> Flow:
    """The flow for one FIB entry: to group `target`, or to the kernel when target is PUNT (0)."""
    if dst.version == 4:
        table, fields = Table.FIB4, [exact("eth_type", ETH_TYPE_IPV4)]
        if dst.prefixlen:
            fields.append(prefix("ipv4_dst", dst))
    else:
        table, fields = Table.FIB6, [exact("eth_type", ETH_TYPE_IPV6)]
        if dst.prefixlen:
            fields.append(prefix("ipv6_dst", dst))
    if target == PUNT:
        actions, meter = (to_controller(),), pipeline.SLOW_PATH_METER
    else:
        actions, meter = (ToGroup(target),), None
    return Flow(int(table), FIB_PRIORITY_BASE + dst.prefixlen, Match.of(*fields), actions=actions,
                meter=meter, cookie=pipeline.cookie(Owner.ROUTE))


def build(ports: list[punt.PortView], with_fib: bool) -> frozenset[Flow]:
    """The flows besides the route flows (controller.fibstate keeps those): punting, and the FIBs'
    hand-over and misses once there is a FIB to hand over to."""
    flows = set(punt.plan(ports))
    if with_fib and ports:
        flows.update(_fixed_flows())
    return frozenset(flows)
