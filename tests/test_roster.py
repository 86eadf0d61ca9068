"""Routers a reload removes and adds (core.RouterCore.remove_router/add_router, roster.py), on the
table model: two routers, each with its switch (fakeswitch.py).

Removing one empties its switch of everything with our cookie, and of the groups and meters
its planner holds, waiting for the switch's barrier; the other router's switch gets no message
at all. The emptied switch's connection is kept, and a router added again with its dpid takes
it at once: read back, then given its flows again.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from fakeswitch import FakeSwitch
from taprouter import config
from taprouter.bridge.ports import PortState
from taprouter.controller import roster
from taprouter.controller.core import RouterCore
from taprouter.controller.openflow import pipeline
from taprouter.controller.router import Router
from taprouter.controller.session.switch import Phase
from test_routing_parse import addr_bytes, link_bytes, neigh_bytes, route_bytes
from test_session import kernel
from taprouter.routing.model import NUD_REACHABLE

D1, D2 = 0x61, 0x62


def router_data(n: int) -> dict:
    return {"dpid": 0x60 + n, "netns": f"trst-r{n}", "ports": {
        1: {"tap": f"trst-{n}a", "addresses": [f"10.{n}.1.1/24"]},
        2: {"tap": f"trst-{n}b", "addresses": [f"10.{n}.2.1/24"]}}}


def fill(router: Router, n: int, count: int = 20) -> None:
    """The kernel as the watcher hands it over: TAPs, addresses, a gateway and `count` routes via it."""
    a, b = f"trst-{n}a", f"trst-{n}b"
    gw = f"10.{n}.2.2"
    kernel(router, link_bytes(11, a), link_bytes(12, b), addr_bytes(11, f"10.{n}.1.1", 24),
           addr_bytes(12, f"10.{n}.2.1", 24), route_bytes(f"10.{n}.1.0", 24, oif=11),
           route_bytes(f"10.{n}.2.0", 24, oif=12), neigh_bytes(12, gw, f"02:00:00:00:0{n}:02", NUD_REACHABLE),
           *(route_bytes(f"20.{n}.{i}.0", 24, gateway=gw, oif=12) for i in range(count)))
    router.watcher.ready.set()


def ports(n: int) -> list[PortState]:
    return [PortState(1, f"0e:00:00:00:6{n}:01", True), PortState(2, f"0e:00:00:00:6{n}:02", True)]


def settle(core: RouterCore, *switches: FakeSwitch, rounds: int = 50) -> None:
    """The reconcile thread (core.step over every router) and the switches taking turns."""
    for _ in range(rounds):
        more = core.step()
        took = sum(sw.deliver() for sw in switches)
        if not (more or took or any(r.events for r in core.routers.values())):
            return
    raise AssertionError("the routers did not settle")


@pytest.fixture
def two(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("TAPROUTER_RUN_DIR", str(tmp_path / "run"))
    cfg = config.parse({"routers": {"r1": router_data(1), "r2": router_data(2)}}, tmp_path / "taprouter.yaml")
    core = RouterCore(cfg)
    fill(core.routers[D1], 1)
    fill(core.routers[D2], 2)
    sw1, sw2 = FakeSwitch(core, D1, ports(1)), FakeSwitch(core, D2, ports(2))
    assert core.switch_connected(sw1) and core.switch_connected(sw2)
    settle(core, sw1, sw2)
    assert all(r.session.phase is Phase.SYNCED for r in core.routers.values())
    return core, sw1, sw2, cfg


def remove(core: RouterCore, sw: FakeSwitch, name: str) -> roster.Departure:
    """remove_router waits for the switch's barrier: the switch answers from this thread."""
    result = {}
    worker = threading.Thread(target=lambda: result.setdefault("departure", core.remove_router(name)))
    worker.start()
    while worker.is_alive():
        sw.deliver()
        worker.join(0.01)
    return result["departure"]


def ours(sw: FakeSwitch) -> list:
    return [f for f in sw.table.snapshot() if pipeline.is_ours(f.cookie)]


def test_a_removed_routers_switch_is_emptied_and_the_other_switch_hears_nothing(two):
    core, sw1, sw2, _ = two
    assert len(ours(sw2)) > 20 and sw2.table.groups and sw2.meters
    kept, heard = sw1.table.snapshot(), len(sw1.received)
    departure = remove(core, sw2, "r2")
    assert departure.emptied is True
    assert ours(sw2) == [] and sw2.table.groups == {} and sw2.meters == {}
    assert not core.knows(D2) and [r.name for r in core.routers.values()] == ["r1"]
    settle(core, sw1, sw2)
    assert sw1.table.snapshot() == kept and len(sw1.received) == heard
    assert "nothing (already down)" in departure.summary("r2", D2)[1]  # no netns, holder or TAP here


def test_a_removed_routers_switch_that_is_not_connected_is_said_so(tmp_path, monkeypatch):
    monkeypatch.setenv("TAPROUTER_RUN_DIR", str(tmp_path / "run"))
    core = RouterCore(config.parse({"routers": {"r1": router_data(1), "r2": router_data(2)}}, tmp_path / "t.yaml"))
    departure = core.remove_router("r2")
    assert departure.emptied is None and "not connected" in departure.summary("r2", D2)[0]
    assert not core.knows(D2)


def test_a_router_added_again_takes_its_connected_switch_at_once(two, monkeypatch):
    core, sw1, sw2, cfg = two
    remove(core, sw2, "r2")
    # Its switch is still connected (a stranger now); events from it reach no router.
    core.port_changed(sw2, ports(2)[0], removed=False)
    # The netns, holder, watcher and BIRD a real start makes are the netns tests' (test_reload_routers):
    # here the router's kernel is handed over as the watcher would.
    monkeypatch.setattr(roster, "start", lambda router: fill(router, 2))
    router = core.add_router(cfg.routers[1])
    assert core.knows(D2) and core._current[D2] is sw2 and D2 not in core._strangers
    settle(core, sw1, sw2)
    assert router.session.dp is sw2 and router.session.phase is Phase.SYNCED
    assert len(ours(sw2)) > 20 and sw2.table.groups and sw2.meters


def test_a_switch_with_no_router_is_kept_until_it_goes(two):
    core, _, sw2, _ = two
    remove(core, sw2, "r2")
    stranger = FakeSwitch(core, 0x99, ports(2))
    assert core.switch_connected(stranger) is False
    assert core._strangers[0x99] is stranger
    core.stranger_gone(stranger)
    assert 0x99 not in core._strangers and core._strangers[D2] is sw2


def test_a_teardown_that_fails_part_way_is_reported_not_raised(two, monkeypatch):
    core, _, sw2, _ = two

    def broken(_config):
        raise OSError("netns busy")
    monkeypatch.setattr(roster, "down", broken)
    departure = remove(core, sw2, "r2")
    assert departure.emptied is True and not core.knows(D2)
    assert departure.teardown.removed == () and "failed part way (netns busy)" in departure.teardown.kept[0]
    assert "r2: kept whatever" in departure.summary("r2", D2)[-1]
