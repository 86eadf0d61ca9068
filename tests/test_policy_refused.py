"""A policy the switch refuses is marked failed with the switch's words, the others go in, and it is
tried again once it changes: end to end on the table model (test_session.py's router and fake switch)."""

from __future__ import annotations

from dataclasses import replace

from fakeswitch import FakeSwitch
from taprouter.controller.openflow import errors, pipeline, wire
from taprouter.controller.openflow.flows import Output
from taprouter.controller.openflow.groups import Bucket, GroupSpec, GroupType
from taprouter.controller.openflow.meters import MeterSpec
from taprouter.controller.openflow.ops import FlowOp, GroupOp, MeterOp, Op
from taprouter.policy.model import State
from test_session import DPID, PORTS, connect, core, policies, run  # noqa: F401 (core is a fixture)


def _ours(sw, policy_id):
    return [f for f in sw.table.snapshot() if f.cookie == pipeline.policy_cookie(policy_id)]


def test_a_refused_policy_is_failed_the_others_installed_and_it_is_tried_again_when_changed(core):
    router = core.routers[DPID]
    sw = FakeSwitch(core, DPID, PORTS)
    connect(core, sw)
    sw.refuse_cookie = pipeline.policy_cookie(1)
    given = policies(("big", {"proto": "tcp", "dport": "1000-1999", "action": "drop"}),
                     ("small", {"dst": "10.8.0.0/16", "action": "drop"}))
    router.set_policies(given)
    run(core, sw, now=1.0)
    # The error brings a read-back after the back-off; the pass after it leaves the refused one out.
    run(core, sw, now=1.0 + router.session.backoff + 5)
    state, error = router.policy_report.states[1]
    assert state is State.FAILED and "OFPET_FLOW_MOD_FAILED/OFPFMFC_TABLE_FULL" in error
    assert router.policy_report.states[2] == (State.INSTALLED, "")
    assert not _ours(sw, 1) and _ours(sw, 2)
    errors_before = router.session.errors
    # Not sent again while it stays as it is ...
    router.set_policies(given)
    run(core, sw, now=30.0)
    assert router.session.errors == errors_before and router.policy_report.states[1][0] is State.FAILED
    # ... but once it changes, it is tried again, and the switch now takes it.
    sw.refuse_cookie = None
    router.set_policies((replace(given[0], priority=200), given[1]))
    run(core, sw, now=31.0)
    assert router.policy_report.states[1] == (State.INSTALLED, "") and _ours(sw, 1)


def test_a_refused_policy_is_tried_again_once_re_enabled(core):
    router = core.routers[DPID]
    sw = FakeSwitch(core, DPID, PORTS)
    connect(core, sw)
    sw.refuse_cookie = pipeline.policy_cookie(1)
    given = policies(("web", {"dst": "10.9.0.0/16", "action": "drop"}))
    router.set_policies(given)
    run(core, sw, now=1.0)
    run(core, sw, now=1.0 + router.session.backoff + 5)
    assert router.policy_report.states[1][0] is State.FAILED
    sw.refuse_cookie = None
    router.set_policies((replace(given[0], enabled=False),))
    run(core, sw, now=40.0)
    assert router.policy_report.states[1][0] is State.DISABLED
    router.set_policies(given)
    run(core, sw, now=41.0)
    assert router.policy_report.states[1] == (State.INSTALLED, "") and _ours(sw, 1)


def test_an_error_names_the_flow_group_or_meter_it_is_about():
    flow = pipeline.route_flow(0, pipeline.KERNEL)
    flow = replace(flow, cookie=pipeline.policy_cookie(7))
    quoted = wire.encode_flow_mod(FlowOp(Op.ADD, flow))[:64]
    assert errors.subject(quoted) == errors.Subject("flow", pipeline.policy_cookie(7))
    group = GroupSpec(GroupType.INDIRECT, (Bucket(0, (Output(2),)),))
    assert errors.subject(wire.encode_group_mod(GroupOp(Op.ADD, 0x7A600003, group))[:64]) == \
        errors.Subject("group", 0x7A600003)
    assert errors.subject(wire.encode_meter_mod(MeterOp(Op.ADD, 0x105, MeterSpec.pps(100)))[:64]) == \
        errors.Subject("meter", 0x105)
    assert errors.subject(b"\x04\x0e") is None  # too little of a message to say
    assert errors.describe(5, 1) == "OFPET_FLOW_MOD_FAILED/OFPFMFC_TABLE_FULL"
    assert errors.describe(6, 0) == "OFPET_GROUP_MOD_FAILED/OFPGMFC_GROUP_EXISTS"
    assert errors.describe(99, 3) == "type 99/code 3"
