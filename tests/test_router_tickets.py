"""Router.set_policies / wait_applied: a ticket for policies reaching the switch, on the session's
fake switch (fakeswitch.py, test_session.py's router with a real kernel mirror and planner).

A ticket is applied once the switch answered the barrier of a pass planned with its policies (or
later ones); a pass with nothing to send applies it at once, unless what it would have sent is
still on its way; a lost connection leaves no waiter past its timeout.
"""

from __future__ import annotations

import threading
import time

from fakeswitch import FakeSwitch
from taprouter.controller.openflow import pipeline
from taprouter.policy.model import State
from test_session import DPID, PORTS, connect, core, policies, run  # noqa: F401 (core is a fixture)

DROP_A = ("a", {"dst": "10.9.0.0/16", "action": "drop"})
DROP_B = ("b", {"dst": "10.8.0.0/16", "action": "drop"})


def applied(router, ticket: int) -> bool:
    return router.wait_applied(ticket, 0.0)


def flows_of(sw: FakeSwitch, policy_id: int) -> list:
    return [f for f in sw.table.snapshot() if f.cookie == pipeline.policy_cookie(policy_id)]


def test_a_ticket_is_applied_once_the_barrier_of_its_pass_is_answered(core):
    router = core.routers[DPID]
    sw = FakeSwitch(core, DPID, PORTS)
    connect(core, sw)
    ticket = router.set_policies(policies(DROP_A))
    assert not applied(router, ticket)
    router.step(1.0)  # the pass goes out, its barrier last
    assert not applied(router, ticket) and router._ticket_of  # written, not answered
    sw.deliver()  # the switch applies it and answers the barrier
    assert flows_of(sw, 1) and not applied(router, ticket)  # the answer is the reconcile thread's to take
    router.step(1.0)
    assert applied(router, ticket)


def test_a_later_ticket_waits_for_its_own_pass(core):
    router = core.routers[DPID]
    sw = FakeSwitch(core, DPID, PORTS)
    connect(core, sw)
    first = router.set_policies(policies(DROP_A))
    router.step(1.0)
    second = router.set_policies(policies(DROP_A, DROP_B))  # while the first pass is on its way
    sw.deliver()
    router.step(1.0)  # takes the first answer, sends the second pass
    assert applied(router, first) and not applied(router, second)
    assert not flows_of(sw, 2)
    sw.deliver()
    router.step(1.0)
    assert applied(router, second) and flows_of(sw, 2)


def test_a_pass_with_nothing_to_send_applies_the_ticket_at_once(core):
    router = core.routers[DPID]
    sw = FakeSwitch(core, DPID, PORTS)
    connect(core, sw)
    brief = policies(DROP_A)
    router.set_policies(brief)
    run(core, sw, now=1.0)
    received = len(sw.received)
    ticket = router.set_policies(brief)  # the same policies again (a notification that changed nothing)
    router.step(2.0)
    assert applied(router, ticket)
    assert len(sw.received) == received  # nothing was sent, not even a barrier


def test_a_pass_with_nothing_to_send_does_not_apply_a_ticket_whose_pass_is_unanswered(core):
    """Another round (a counter reply, a kernel change elsewhere) finds nothing left to send while
    the pass carrying the policies is still on its way: the switch does not have them yet."""
    router = core.routers[DPID]
    sw = FakeSwitch(core, DPID, PORTS)
    connect(core, sw)
    ticket = router.set_policies(policies(DROP_A))
    router.step(1.0)
    router.step(1.1)  # nothing new to plan
    assert not flows_of(sw, 1)
    assert not applied(router, ticket)
    sw.deliver()
    router.step(1.2)
    assert applied(router, ticket) and flows_of(sw, 1)


def test_a_waiter_in_another_thread_is_woken_by_the_answer(core):
    router = core.routers[DPID]
    sw = FakeSwitch(core, DPID, PORTS)
    connect(core, sw)
    ticket = router.set_policies(policies(DROP_A))
    result: list[tuple[bool, float]] = []

    def wait() -> None:
        started = time.monotonic()
        result.append((router.wait_applied(ticket, 10.0), time.monotonic() - started))

    waiter = threading.Thread(target=wait)
    waiter.start()
    run(core, sw, now=1.0)
    waiter.join(10.0)
    assert result and result[0][0] is True and result[0][1] < 5.0, result


def test_a_lost_connection_leaves_no_waiter_past_its_timeout(core):
    router = core.routers[DPID]
    sw = FakeSwitch(core, DPID, PORTS)
    connect(core, sw)
    ticket = router.set_policies(policies(DROP_A))
    router.step(1.0)  # sent; the switch goes away before answering
    assert core.switch_down(sw)
    router.step(1.1)
    started = time.monotonic()
    assert router.wait_applied(ticket, 0.3) is False
    waited = time.monotonic() - started
    assert 0.25 <= waited < 2.0, waited
    # Rounds without a switch apply nothing: there is no switch to have them.
    router.step(1.2)
    assert not applied(router, ticket)
    # The switch comes back (its table as it was, without the pass that got lost): the pass after
    # the read-back carries the policies, and its answer applies the ticket.
    again = FakeSwitch(core, DPID, PORTS, table=sw.table)
    again.meters = sw.meters
    connect(core, again, now=2.0)
    assert applied(router, ticket) and flows_of(again, 1)


def test_a_reconnection_that_changes_nothing_applies_the_ticket(core):
    """A pass went out and was answered; the connection then dropped. After the read-back nothing
    is left to send: the switch has the policies, and the ticket taken meanwhile is applied."""
    router = core.routers[DPID]
    sw = FakeSwitch(core, DPID, PORTS)
    connect(core, sw)
    brief = policies(DROP_A)
    router.set_policies(brief)
    run(core, sw, now=1.0)
    assert core.switch_down(sw)
    run(core, sw, now=1.5)
    ticket = router.set_policies(brief)
    again = FakeSwitch(core, DPID, PORTS, table=sw.table)
    again.meters = sw.meters
    connect(core, again, now=2.0)
    assert again.mods() == [] and applied(router, ticket)


def test_a_reenabling_handed_over_during_a_round_is_applied_only_with_the_policy_on_the_switch(core):
    """set_policies comes from the policy source's thread, at any moment of a round: a ticket taken
    while a round runs is not applied by that round, which planned without its re-enabling."""
    router = core.routers[DPID]
    sw = FakeSwitch(core, DPID, PORTS)
    connect(core, sw)
    brief = policies(("brief", {"dst": "10.9.0.0/16", "action": "drop", "hard_timeout": "60"}))
    router.set_policies(brief)
    run(core, sw, now=1.0)
    sw.expire(pipeline.policy_cookie(1))
    run(core, sw, now=2.0)
    assert router.policy_report.states[1][0] is State.EXPIRED and not flows_of(sw, 1)

    tickets: list[int] = []
    tick = router.session.tick

    def tick_then_reenable(now):  # the source's thread, between the round's start and its plan
        tick(now)
        if not tickets:
            tickets.append(router.set_policies(brief, reenabled={1}))

    router.session.tick = tick_then_reenable
    router.step(3.0)
    assert tickets and not flows_of(sw, 1)
    assert not applied(router, tickets[0])
    run(core, sw, now=3.1)  # the next round (set_policies woke the reconcile thread for it)
    assert flows_of(sw, 1) and applied(router, tickets[0])
    assert router.policy_report.states[1] == (State.INSTALLED, "")


def test_a_pass_that_failed_while_sending_applies_no_ticket_until_the_switch_is_read_back(core, monkeypatch):
    from taprouter.controller.session import sending

    router = core.routers[DPID]
    sw = FakeSwitch(core, DPID, PORTS)
    connect(core, sw)
    ticket = router.set_policies(policies(DROP_A))

    def broken(*_args):
        raise OSError("the connection broke halfway")

    monkeypatch.setattr(sending, "send_batched", broken)
    core.step()  # the daemon's round: the failure is logged, a resync is due
    monkeypatch.undo()
    assert router.session.resync_at is not None
    router.step(router.session.resync_at - 0.05)  # the planner thinks it sent them: nothing left to send
    assert not applied(router, ticket) and not flows_of(sw, 1)
    run(core, sw, now=router.session.resync_at + 0.01)  # read back, the policy sent again, answered
    assert flows_of(sw, 1) and applied(router, ticket)
