"""The daemon's side of a switch, end to end on the table model: a RouterCore's router with a real kernel
mirror, its session and planner, writing to a fake switch (fakeswitch.py) that parses every message
with os-ken, applies it to the in-memory OpenFlow table and answers as a switch would.

Covered: the handshake and read-back, a reconnection that changes nothing, errors and the resync
with a back-off that doubles and then resets, a switch without ONF bundles, requests the switch
leaves unanswered, and a pass that fails in the middle.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from fakeswitch import FakeSwitch
from fibharness import read_back
from taprouter import config, prefix
from taprouter.bridge.ports import PortState
from taprouter.controller.core import RouterCore
from taprouter.controller.openflow import pipeline
from taprouter.controller.session import sending, switch
from taprouter.controller.session.switch import Disconnected, Phase
from taprouter.routing import netlink
from taprouter.routing.model import NUD_REACHABLE
from test_routing_parse import addr_bytes, link_bytes, neigh_bytes, route_bytes

DPID = 0x51
MAC1, MAC2 = "0e:00:00:00:51:01", "0e:00:00:00:51:02"
GW, GW_MAC = "10.0.2.2", "02:00:00:00:02:02"
PORTS = [PortState(1, MAC1, True), PortState(2, MAC2, True)]


@pytest.fixture
def core(tmp_path: Path, monkeypatch) -> RouterCore:
    monkeypatch.setenv("TAPROUTER_RUN_DIR", str(tmp_path / "run"))
    data = {"routers": {"r1": {"dpid": DPID, "netns": "tses-r1", "ports": {
        1: {"tap": "tses-t1", "addresses": ["10.0.1.1/24"]}, 2: {"tap": "tses-t2", "addresses": ["10.0.2.1/24"]}}}}}
    return build(config.parse(data, tmp_path / "taprouter.yaml"))


def build(cfg) -> RouterCore:
    core = RouterCore(cfg)
    router = core.routers[DPID]
    # The kernel, as the watcher hands its datagrams to the mirror: the TAPs, their addresses,
    # a resolved gateway behind port 2.
    kernel(router, link_bytes(11, "tses-t1"), link_bytes(12, "tses-t2"), addr_bytes(11, "10.0.1.1", 24),
           addr_bytes(12, "10.0.2.1", 24), route_bytes("10.0.1.0", 24, oif=11), route_bytes("10.0.2.0", 24, oif=12),
           neigh_bytes(12, GW, GW_MAC, NUD_REACHABLE))
    router.watcher.ready.set()  # the first dump is in
    return core


def kernel(router, *datagrams: bytes) -> None:
    for msg in netlink.decode(b"".join(datagrams)):
        router.mirror.apply(msg)


def routes(router, count: int, start: int = 0, delete: bool = False) -> None:
    kernel(router, *(route_bytes(str(ipaddress.ip_address(0x14000000 + (i << 8))), 24, gateway=GW, oif=12,
                                 kind=25 if delete else 24) for i in range(start, start + count)))


def run(core: RouterCore, sw: FakeSwitch, now: float = 0.0, rounds: int = 50) -> None:
    """The reconcile thread and the switch taking turns until neither has anything left."""
    router = core.routers[DPID]
    for _ in range(rounds):
        more = router.step(now)
        took = sw.deliver()
        if not (router.events or took or more):
            return
    raise AssertionError("the session did not settle")


def connect(core: RouterCore, sw: FakeSwitch, now: float = 0.0) -> None:
    core.switch_connected(sw)
    run(core, sw, now)


def on_switch(sw: FakeSwitch) -> dict[int, int]:
    """The route flows the switch holds: prefix -> group id or pipeline.KERNEL."""
    return read_back(sw.table).routes


def prefixes(count: int, start: int = 0) -> set[int]:
    return {prefix.pack(4, 0x14000000 + (i << 8), 24) for i in range(start, start + count)}


def test_a_new_switch_is_read_back_then_given_the_fib_with_meters_before_flows(core):
    router = core.routers[DPID]
    routes(router, 20)
    sw = FakeSwitch(core, DPID, PORTS)
    connect(core, sw)
    assert router.session.phase is Phase.SYNCED and sw.table.errors == []
    held = on_switch(sw)
    assert prefixes(20) <= held.keys() and all(pipeline.owns_group(held[pk]) for pk in prefixes(20))
    assert sw.meters.keys() == pipeline.meters_for(p.number for p in PORTS).keys()  # else a flow naming it was refused
    assert router.status["flows_installed"] == len(sw.table.snapshot())


def test_a_reconnection_reads_the_switch_back_and_changes_nothing(core):
    router = core.routers[DPID]
    routes(router, 30)
    sw = FakeSwitch(core, DPID, PORTS)
    connect(core, sw)
    before = (sw.table.snapshot(), sw.table.group_snapshot())
    assert core.switch_down(sw)
    run(core, sw)
    again = FakeSwitch(core, DPID, PORTS, table=sw.table)  # the same switch on a new connection
    again.meters = sw.meters
    connect(core, again)
    assert router.session.dp is again and router.session.synced
    assert again.mods() == [] and (again.table.snapshot(), again.table.group_snapshot()) == before


def test_an_old_connections_events_are_ignored_once_the_switch_reconnected(core):
    router = core.routers[DPID]
    old = FakeSwitch(core, DPID, PORTS)
    connect(core, old)
    new = FakeSwitch(core, DPID, PORTS, table=old.table)
    connect(core, new)
    assert not core.switch_down(old)  # its end, found late, is not the switch's end
    router.hand_over(Disconnected(old))
    run(core, new)
    assert router.session.dp is new and router.session.synced


def test_an_error_rereads_the_switch_after_a_back_off_that_doubles_then_resets(core):
    router = core.routers[DPID]
    session = router.session
    sw = FakeSwitch(core, DPID, PORTS)
    connect(core, sw)
    bad = prefix.pack(4, 0x14000000, 24)
    sw.refuse_prefix = bad  # "table full" for this one route, every time
    routes(router, 5)
    run(core, sw, now=10.0)
    assert session.errors == 1 and session.resync_at == 10.0 + switch.BACKOFF_MIN
    assert bad not in on_switch(sw) and prefixes(4, 1) <= on_switch(sw).keys()  # the others are in
    run(core, sw, now=10.4)
    assert session.phase is Phase.SYNCED and session.resync_at == 10.5  # not yet
    run(core, sw, now=10.6)  # read back; the refused route is planned again and refused again
    assert session.errors == 2 and session.resync_at == 10.6 + 2 * switch.BACKOFF_MIN
    run(core, sw, now=11.7)
    assert session.errors == 3 and session.resync_at == 11.7 + 4 * switch.BACKOFF_MIN
    assert session.backoff == 8 * switch.BACKOFF_MIN
    sw.refuse_prefix = None  # the switch has room again
    run(core, sw, now=13.8)
    assert session.errors == 3 and session.resync_at is None
    assert bad in on_switch(sw) and session.backoff == switch.BACKOFF_MIN  # a clean pass: reset


def test_the_back_off_stops_growing_at_its_ceiling(core):
    session = core.routers[DPID].session
    sw = FakeSwitch(core, DPID, PORTS)
    connect(core, sw)
    sw.refuse_prefix = prefix.pack(4, 0x14000000, 24)
    routes(core.routers[DPID], 1)
    now = 100.0
    for _ in range(12):
        run(core, sw, now)
        now = session.resync_at + 0.01
    assert session.backoff == switch.BACKOFF_MAX and session.errors == 12


def test_a_switch_that_refuses_bundles_gets_its_deletes_one_by_one(core):
    router = core.routers[DPID]
    session = router.session
    sw = FakeSwitch(core, DPID, PORTS)
    count = sending.BUNDLE_DELETES + 36
    routes(router, count)
    connect(core, sw)
    assert prefixes(count) <= on_switch(sw).keys()
    sw.refuse_bundles = True
    routes(router, count, delete=True)
    run(core, sw, now=1.0)  # the withdrawal goes as a bundle, which the switch refuses
    assert not session.bundles and session.errors >= 1
    assert prefixes(count) <= on_switch(sw).keys()  # nothing was deleted
    run(core, sw, now=1.0 + switch.BACKOFF_MAX)  # read back, and the deletes again, as flow_mods
    assert not prefixes(count) & on_switch(sw).keys()
    assert on_switch(sw) == {pk: t for pk, t in read_back(sw.table).routes.items()}
    assert sw.table.errors == []


def test_ports_left_undescribed_are_asked_for_again(core):
    session = core.routers[DPID].session
    sw = FakeSwitch(core, DPID, PORTS)
    sw.silent.add(sw.ofproto.OFPMP_PORT_DESC)
    connect(core, sw)
    assert session.phase is Phase.DESCRIBING
    run(core, sw, now=switch.PORT_DESC_RETRY - 0.1)
    asked = [m for m in sw.received if m[1] == sw.ofproto.OFPT_MULTIPART_REQUEST]
    assert len(asked) == 1
    sw.silent.clear()
    run(core, sw, now=switch.PORT_DESC_RETRY + 0.1)
    assert session.synced


def test_a_read_back_left_unanswered_is_asked_for_again(core):
    session = core.routers[DPID].session
    sw = FakeSwitch(core, DPID, PORTS)
    sw.silent.add(sw.ofproto.OFPMP_FLOW)
    connect(core, sw)
    assert session.phase is Phase.READING
    assert session.next_deadline() == switch.READ_BACK_RETRY
    sw.silent.clear()
    run(core, sw, now=switch.READ_BACK_RETRY + 1)
    assert session.synced


def test_a_pass_that_fails_while_sending_is_followed_by_a_read_back(core, monkeypatch):
    router = core.routers[DPID]
    sw = FakeSwitch(core, DPID, PORTS)
    connect(core, sw)
    routes(router, 3)

    def broken(*_args):
        raise OSError("the connection broke halfway")

    monkeypatch.setattr(sending, "send_batched", broken)
    core.step()  # the daemon's own round: the failure is logged and the switch read again
    assert router.session.resync_at is not None
    monkeypatch.undo()
    run(core, sw, now=router.session.resync_at + 0.01)
    assert router.session.synced and prefixes(3) <= on_switch(sw).keys()


# --- policies: expiry and counters ----------------------------------------------------------------

def policies(*fields_by_name):
    from dataclasses import replace
    from taprouter.policy.model import parse
    return tuple(replace(parse("r1", name, fields), id=i + 1) for i, (name, fields) in enumerate(fields_by_name))


def test_a_policy_whose_timeout_fired_is_expired_not_put_back_and_back_when_reenabled(core):
    from taprouter.policy.model import State
    router = core.routers[DPID]
    sw = FakeSwitch(core, DPID, PORTS)
    connect(core, sw)
    brief = policies(("brief", {"dst": "10.9.0.0/16", "action": "drop", "hard_timeout": "60"}),
                     ("other", {"dst": "10.8.0.0/16", "action": "drop"}))
    router.set_policies(brief)
    run(core, sw, now=1.0)
    cookie = pipeline.policy_cookie(1)
    ours = [f for f in sw.table.snapshot() if f.cookie == cookie]
    assert len(ours) == 1 and ours[0].hard_timeout == 60
    assert router.policy_report.states[1] == (State.INSTALLED, "")
    sw.expire(cookie)
    run(core, sw, now=2.0)
    assert router.policy_report.states[1][0] is State.EXPIRED and 1 in router.policy_report.expired
    assert router.policy_report.states[2][0] is State.INSTALLED
    # Neither a reconnection nor the same policies again put it back.
    again = FakeSwitch(core, DPID, PORTS, table=sw.table)
    again.meters = sw.meters
    assert core.switch_down(sw)
    connect(core, again, now=3.0)
    router.set_policies(brief)
    run(core, again, now=4.0)
    assert not [f for f in again.table.snapshot() if f.cookie == cookie]
    router.set_policies(brief, reenabled={1})
    run(core, again, now=5.0)
    assert [f for f in again.table.snapshot() if f.cookie == cookie]
    assert router.policy_report.states[1] == (State.INSTALLED, "")


def test_policy_counters_are_polled_and_summed_over_a_policys_flows(core):
    router = core.routers[DPID]
    sw = FakeSwitch(core, DPID, PORTS)
    connect(core, sw)
    router.set_policies(policies(("web", {"proto": "tcp", "dport": "80-81", "action": "drop"})))
    run(core, sw, now=10.0)
    flows = [f for f in sw.table.snapshot() if f.cookie == pipeline.policy_cookie(1)]
    assert len(flows) == 2  # both families: 80-81 is one block
    sw.counts = {flows[0].key: (5, 500), flows[1].key: (7, 900)}
    run(core, sw, now=12.5)  # the poll after COUNT_INTERVAL
    assert router.policy_report.counters == {1: (12, 1400)}
    # A read-back's flow-stats reply is not taken for counters, nor the other way round.
    assert not router.count_xids


def test_a_restarted_daemon_leaves_the_policy_table_alone_until_its_policies_are_read(core):
    """The store is read after the switch connects, or cannot be read at all: the switch keeps the
    policies it has meanwhile; once they come, only what differs goes."""
    router = core.routers[DPID]
    sw = FakeSwitch(core, DPID, PORTS)
    connect(core, sw)
    kept = policies(("a", {"dst": "10.9.0.0/16", "action": "drop"}), ("b", {"dst": "10.8.0.0/16", "action": "drop"}))
    router.set_policies(kept)
    run(core, sw, now=1.0)
    before = sw.table.snapshot()
    assert [f for f in before if f.cookie == pipeline.policy_cookie(2)]
    assert core.switch_down(sw)

    restarted = build(core.config)
    again = FakeSwitch(restarted, DPID, PORTS, table=sw.table)
    again.meters = sw.meters
    connect(restarted, again, now=2.0)
    assert again.mods() == [] and again.table.snapshot() == before
    restarted.routers[DPID].set_policies(kept[:1])  # b was deleted while no daemon ran
    run(restarted, again, now=3.0)
    after = again.table.snapshot()
    assert not [f for f in after if f.cookie == pipeline.policy_cookie(2)]
    assert after == {f for f in before if f.cookie != pipeline.policy_cookie(2)}


def test_a_report_whose_counters_alone_changed_shares_its_states(core):
    from taprouter.policy.model import State
    router = core.routers[DPID]
    sw = FakeSwitch(core, DPID, PORTS)
    connect(core, sw)
    router.set_policies(policies(("web", {"proto": "tcp", "dport": "80", "action": "drop"}),
                                 ("off", {"dst": "10.8.0.0/16", "action": "drop", "enabled": "no"})))
    run(core, sw, now=10.0)
    before = router.policy_report
    assert before.states == {1: (State.INSTALLED, ""), 2: (State.DISABLED, "")}
    flows = [f for f in sw.table.snapshot() if f.cookie == pipeline.policy_cookie(1)]
    sw.counts = {flows[0].key: (5, 500)}
    run(core, sw, now=12.5)  # the poll after COUNT_INTERVAL
    after = router.policy_report
    assert after.counters == {1: (5, 500)} and after is not before
    assert after.states_of is before.states_of
