"""The in-memory OpenFlow table model (tests/oftable.py) itself, so the tests built on it can trust it."""

from __future__ import annotations

from ipaddress import IPv4Network

import pytest

from oftable import Emitted, ModelError, OFTable
from taprouter.controller.openflow.flows import (DecTtl, ETH_TYPE_ARP, ETH_TYPE_IPV4, Flow, Match, Output, SetField, ToGroup, exact, prefix_match, to_controller)
from taprouter.controller.openflow.ops import FlowOp, Op

from test_punt import OURS, v4


def _flow(table: int, priority: int, *fields, actions=(), goto=None, cookie=OURS) -> Flow:
    return Flow(table, priority, Match.of(*fields), tuple(actions), goto, None, cookie)


def test_model_highest_priority_wins_and_miss_drops():
    t = OFTable([_flow(0, 10, exact("in_port", 1), actions=[Output(2)]),
                 _flow(0, 20, exact("in_port", 1), exact("eth_type", ETH_TYPE_IPV4), actions=[Output(3)])])
    assert t.process({"in_port": 1, "eth_type": ETH_TYPE_IPV4}).ports == (3,)
    assert t.process({"in_port": 1, "eth_type": ETH_TYPE_ARP}).ports == (2,)
    assert t.process({"in_port": 2}).dropped


def test_model_actions_in_order_and_goto():
    t = OFTable([
        _flow(0, 1, actions=[Output(2), SetField("eth_dst", 5), Output(3)], goto=4),
        _flow(4, 1, actions=[DecTtl(), Output(4), to_controller()]),
    ])
    fate = t.process({"in_port": 1, "eth_dst": 9, "ttl": 10})
    assert fate.outputs == (Emitted(2, {"in_port": 1, "eth_dst": 9, "ttl": 10}),
                            Emitted(3, {"in_port": 1, "eth_dst": 5, "ttl": 10}),
                            Emitted(4, {"in_port": 1, "eth_dst": 5, "ttl": 9}))
    assert fate.to_controller and fate.controller_packets == ({"in_port": 1, "eth_dst": 5, "ttl": 9},)


def test_model_ttl_expiry_drops():
    t = OFTable([_flow(0, 1, actions=[DecTtl(), Output(2)])])
    assert t.process({"in_port": 1, "ttl": 2}).ports == (2,)
    fate = t.process({"in_port": 1, "ttl": 1})
    assert fate.dropped and fate.ttl_expired
    with pytest.raises(ModelError):
        t.process({"in_port": 1})


def test_model_never_outputs_to_in_port():
    t = OFTable([_flow(0, 1, actions=[Output(1), Output(2)])])
    assert t.process({"in_port": 1}).ports == (2,)


def test_model_groups():
    buckets = [(SetField("eth_dst", p), Output(p)) for p in (10, 11, 12, 13)]
    t = OFTable([_flow(0, 1, exact("in_port", 1), actions=[ToGroup(1)]),
                 _flow(0, 1, exact("in_port", 2), actions=[ToGroup(2), Output(3)])],
                groups={1: buckets, 2: [(SetField("eth_dst", 7), Output(5))]})
    chosen = set()
    for dst in range(64):
        packet = {"in_port": 1, "eth_type": ETH_TYPE_IPV4, "ipv4_dst": dst}
        fate = t.process(packet)
        assert len(fate.outputs) == 1 and fate.outputs[0].packet["eth_dst"] == fate.outputs[0].port
        assert t.process(packet) == fate  # deterministic
        chosen.add(fate.ports[0])
    assert chosen == {10, 11, 12, 13}
    # A bucket rewrites a copy; the pipeline's packet is untouched.
    fate = t.process({"in_port": 2, "eth_dst": 1})
    assert fate.outputs == (Emitted(5, {"in_port": 2, "eth_dst": 7}), Emitted(3, {"in_port": 2, "eth_dst": 1}))
    with pytest.raises(ModelError):
        OFTable([_flow(0, 1, actions=[ToGroup(9)])]).process({"in_port": 1})


def test_model_modify_delete_semantics():
    a = _flow(0, 5, exact("in_port", 1), actions=[Output(2)])
    t = OFTable([a])
    t.apply([FlowOp(Op.MODIFY, _flow(0, 5, exact("in_port", 1), actions=[Output(3)], cookie=0))])
    assert t.snapshot() == {_flow(0, 5, exact("in_port", 1), actions=[Output(3)])}
    t.apply([FlowOp(Op.MODIFY, _flow(0, 6, exact("in_port", 1), actions=[Output(4)]))])
    assert len(t) == 1  # modify of a missing flow adds nothing
    t.apply([FlowOp(Op.DELETE, _flow(0, 5, exact("in_port", 2)))])
    assert len(t) == 1  # delete is strict: another match is another flow
    t.apply([FlowOp(Op.DELETE, a)])
    assert t.snapshot() == frozenset()


def test_model_rejects_ambiguous_overlap_and_backward_goto():
    t = OFTable([_flow(0, 5, exact("in_port", 1), actions=[Output(2)]),
                 _flow(0, 5, exact("eth_type", ETH_TYPE_ARP), actions=[Output(3)])])
    with pytest.raises(ModelError):
        t.process({"in_port": 1, "eth_type": ETH_TYPE_ARP})
    with pytest.raises(ModelError):
        OFTable([_flow(1, 1, goto=1), _flow(0, 1, goto=1)]).process({"in_port": 1})


def test_model_masked_match():
    flow = _flow(1, 1, exact("eth_type", ETH_TYPE_IPV4), prefix_match("ipv4_dst", IPv4Network("10.0.0.0/8")),
                 actions=[Output(2)])
    t = OFTable([_flow(0, 1, goto=1), flow])
    assert t.process({"in_port": 1, "eth_type": ETH_TYPE_IPV4, "ipv4_dst": v4("10.200.1.1")}).ports == (2,)
    assert t.process({"in_port": 1, "eth_type": ETH_TYPE_IPV4, "ipv4_dst": v4("11.0.0.1")}).dropped
