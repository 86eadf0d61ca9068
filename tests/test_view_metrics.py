"""The daemon's metrics snapshot (controller/view.py): policy figures as columns, kept between
scrapes while what they are made of is the same, and following each thing that changes."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

from taprouter.control.metrics import Histogram
from taprouter.controller.policyreport import PolicyReport, States
from taprouter.controller.view import DaemonState
from taprouter.policy.model import State, parse


def _policies(*names: str) -> tuple:
    return tuple(replace(parse("r1", name, {"action": "drop", "dst": f"10.9.{i}.0/24"}), id=i + 1)
                 for i, name in enumerate(names))


def _daemon(policies, states, counters, totals):
    router = SimpleNamespace(
        name="r1", config=SimpleNamespace(dpid=1, bird=None, ports=()), connections=1, punt_drops={},
        status={"switch_connected": True, "offload": {"switched": 10, "to_kernel": 0, "unresolved_next_hops": 0}},
        mirror=SimpleNamespace(routes={}), planner=SimpleNamespace(backlog=[]), passes=Histogram(),
        policies=policies, policy_report=PolicyReport(States(policies, states, {}, True), {}, counters))
    core = SimpleNamespace(routers={1: router}, relay=SimpleNamespace(packet_ins={}, packet_outs={}, errors={}))
    source = SimpleNamespace(totals=totals, written=lambda pid: None)
    return DaemonState(core, source), router, source


def _rows(view):
    (router,) = view.metrics().routers
    return list(router.policies), router.policies


def test_policy_columns_follow_policies_states_and_counts_and_are_kept_while_those_are():
    policies = _policies("a", "b")
    view, router, source = _daemon(policies, {1: (State.INSTALLED, "")}, {2: (4, 400)}, {1: (7, 700)})
    rows, first = _rows(view)
    # b's count from the switch (no total written yet); b not planned yet: pending.
    assert [(p.name, p.packets, p.bytes, p.state) for p in rows] == [("a", 7, 700, "installed"),
                                                                     ("b", 4, 400, "pending")]
    _, again = _rows(view)
    assert (again.names, again.packets, again.states) == (first.names, first.packets, first.states)
    assert again.names is first.names and again.packets is first.packets and again.states is first.states

    source.totals = {1: (8, 800), 2: (5, 500)}  # the store's writer replaced them
    rows, counted = _rows(view)
    assert [(p.packets, p.bytes) for p in rows] == [(8, 800), (5, 500)] and counted.states is first.states

    router.policy_report = PolicyReport(States(policies, {1: (State.INSTALLED, ""), 2: (State.FAILED, "x")}, {},
                                               True), {}, {})
    rows, _ = _rows(view)
    assert [p.state for p in rows] == ["installed", "failed"]

    router.policies = _policies("a", "b", "c")
    rows, _ = _rows(view)
    assert [p.name for p in rows] == ["a", "b", "c"] and rows[2].state == "pending" and rows[2].packets == 0
