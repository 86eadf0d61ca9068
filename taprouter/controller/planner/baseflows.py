"""The flows a switch holds besides the route flows ("base flows"): ingress filtering and punting
(punt.py), and each FIB table's hand-over and miss."""

from __future__ import annotations

from ..openflow import pipeline
from ..openflow.flows import ETH_TYPE_IPV4, ETH_TYPE_IPV6, Flow, Match, exact, to_controller
from ..openflow.pipeline import PRIO_TO_FIB, Owner, Table
from . import punt


def fib_flows() -> list[Flow]:
    """The hand-over from the punt table to the FIBs, and each FIB's miss to the kernel (metered)."""
    cookie = pipeline.cookie(Owner.PIPELINE)
    flows = []
    for eth_type, table in ((ETH_TYPE_IPV4, Table.FIB4), (ETH_TYPE_IPV6, Table.FIB6)):
        flows.append(Flow(int(Table.PUNT), PRIO_TO_FIB, Match.of(exact("eth_type", eth_type)), goto=int(table),
                          cookie=cookie))
        flows.append(Flow(int(table), 0, Match(), actions=(to_controller(),),
                          meter=pipeline.SLOW_PATH_METER, cookie=cookie))
    return [pipeline.check(f) for f in flows]


def build(ports: list[punt.PortView]) -> frozenset[Flow]:
    """Every base flow for these ports; none without a port, as there is nothing to route between."""
    flows = set(punt.plan(ports))
    if ports:
        flows.update(fib_flows())
    return frozenset(flows)
