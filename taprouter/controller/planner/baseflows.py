"""The flows a switch holds besides the route and policy flows ("base flows"): ingress filtering and
punting (punt.py), the policy table's fixed bands, and each FIB table's hand-over and miss."""

from __future__ import annotations

from ..openflow import pipeline
from ..openflow.flows import (ETH_TYPE_ARP, ETH_TYPE_IPV6, ETH_TYPE_IPV4, IPPROTO_ICMPV6, Flow, Match, exact,
                              to_controller)
from ..openflow.pipeline import PRIO_POLICY_GUARD, PRIO_POLICY_OWN, PRIO_TO_FIB, Owner, Table
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


def policy_table_flows(ports: list[punt.PortView], bgp_peers: frozenset | None = None) -> list[Flow]:
    """The policy table's own flows (pipeline.py has the bands): the ICMPv6 that keeps the router
    reachable on at the top, the router's own traffic on (as the punt table will punt it) between
    the two bands of policies, and the miss on to the punt table."""
    fixed = pipeline.cookie(Owner.PIPELINE)
    flows = [Flow(int(Table.POLICY), PRIO_POLICY_GUARD, Match.of(exact("eth_type", ETH_TYPE_IPV6),
                                                               exact("ip_proto", IPPROTO_ICMPV6),
                                                               exact("icmpv6_type", icmp_type)),
                  goto=int(Table.PUNT), cookie=fixed)
             for icmp_type in punt.ICMPV6_CONTROL_TYPES]
    for own in punt.punt_flows(ports, bgp_peers):
        if any(f.name == "eth_type" and f.value == ETH_TYPE_ARP for f in own.match.fields):
            continue  # policies match IP only: ARP always reaches the punt table
        flows.append(Flow(int(Table.POLICY), PRIO_POLICY_OWN + own.priority, own.match, goto=int(Table.PUNT),
                          cookie=own.cookie))
    flows.append(Flow(int(Table.POLICY), 0, Match(), goto=int(Table.PUNT), cookie=fixed))
    return [pipeline.check(f) for f in flows]


def build(ports: list[punt.PortView], bgp_peers: frozenset | None = None) -> frozenset[Flow]:
    """Every base flow for these ports (BGP admitted from `bgp_peers`); none without a port, as there
    is nothing to route between."""
    flows = set(punt.plan(ports, bgp_peers))
    if ports:
        flows.update(policy_table_flows(ports, bgp_peers))
        flows.update(fib_flows())
    return frozenset(flows)
