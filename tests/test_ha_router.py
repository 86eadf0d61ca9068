"""A router of an HA pair against the fake switch: nothing written before the lease answers or as
standby; as a new master, the route flows its kernel lacks are held, then swept once converged."""

from __future__ import annotations

from pathlib import Path

import pytest
from os_ken.ofproto import ofproto_v1_3 as ofp

from fakeswitch import FakeSwitch
from taprouter import config
from taprouter.ha.roles import LeaseState, Role
from test_session import DPID, PORTS, build, connect, on_switch, prefixes, routes, run

PG = "postgresql://taprouter@/taprouter?host=/nonexistent-taprouter-ha"


def cfg(tmp_path: Path, ha: dict | None):
    data = {"routers": {"r1": {"dpid": DPID, "netns": "tses-r1", "ports": {
        1: {"tap": "tses-t1", "addresses": ["10.0.1.1/24"]}, 2: {"tap": "tses-t2", "addresses": ["10.0.2.1/24"]}}}}}
    if ha is not None:
        data.update(database=PG, ha=ha)
    return config.parse(data, tmp_path / "taprouter.yaml")


@pytest.fixture
def switch_of_old_master(tmp_path, monkeypatch) -> FakeSwitch:
    """A switch that the old master filled: 20 routes."""
    monkeypatch.setenv("TAPROUTER_RUN_DIR", str(tmp_path / "run"))
    old = build(cfg(tmp_path, None))
    routes(old.routers[DPID], 20)
    sw = FakeSwitch(old, DPID, PORTS)
    connect(old, sw)
    assert prefixes(20) <= on_switch(sw).keys()
    return sw


def test_standby_writes_nothing_then_a_takeover_holds_and_sweeps(tmp_path, switch_of_old_master):
    core = build(cfg(tmp_path, {"enabled": True, "lease_seconds": 1, "settle_seconds": 5}))
    router = core.routers[DPID]
    ha = router.ha
    routes(router, 12)  # its BIRD has relearnt 12 of the 20 so far
    sw = FakeSwitch(core, DPID, PORTS, table=switch_of_old_master.table)
    sw.meters = switch_of_old_master.meters
    connect(core, sw, now=0.0)
    assert ha.role is Role.STARTING and sw.mods() == [] and sw.role == ofp.OFPCR_ROLE_EQUAL

    ha.lease.state = LeaseState(False, 4, "a", None, 1.0)  # another daemon holds the lease
    run(core, sw, now=1.0)
    assert ha.role is Role.STANDBY and sw.role == ofp.OFPCR_ROLE_SLAVE and sw.mods() == []
    assert not router.relays() and not router.writes_store

    ha.lease.state = LeaseState(True, 5, "b", 2.0, 2.0)  # it took the lease
    run(core, sw, now=2.0)
    assert ha.role is Role.MASTER and sw.role == ofp.OFPCR_ROLE_MASTER and router.relays()
    assert router.session.role_confirmed == (ofp.OFPCR_ROLE_MASTER, 5)
    held = on_switch(sw)
    assert prefixes(20) <= held.keys(), "a takeover deleted flows its kernel does not have yet"
    assert router.status["ha"]["stale_flows"] >= 8 and router.status["ha"]["generation"] == 5

    routes(router, 3, start=12)  # 3 more come back: rewritten at once, out of the hold
    ha.lease.state = LeaseState(True, 5, "b", 3.0, 3.0)
    run(core, sw, now=3.0)
    assert not prefixes(15) & router.planner.stale.routes.keys()

    ha.lease.state = LeaseState(True, 5, "b", 8.0, 8.0)
    run(core, sw, now=8.0)  # settle_seconds after the hold began, with no BIRD: swept
    assert router.planner.stale is None and ha.converged_by == "no bird"
    now_on = on_switch(sw)
    assert prefixes(15) <= now_on.keys() and not (prefixes(5, start=15) & now_on.keys())
    assert sw.table.errors == []


def test_a_master_that_cannot_renew_writes_nothing(tmp_path, switch_of_old_master):
    core = build(cfg(tmp_path, {"enabled": True, "lease_seconds": 1, "settle_seconds": 0}))
    router = core.routers[DPID]
    routes(router, 20)
    sw = FakeSwitch(core, DPID, PORTS, table=switch_of_old_master.table)
    sw.meters = switch_of_old_master.meters
    router.ha.lease.state = LeaseState(True, 1, "b", 0.0, 0.0)
    connect(core, sw, now=0.0)
    assert router.ha.role is Role.MASTER
    before = len(sw.mods())
    router.ha.lease.state = LeaseState(True, 1, "b", 0.0, 0.0, "server gone")
    routes(router, 5, start=30)
    run(core, sw, now=2.0)
    assert router.ha.role is Role.FENCED and len(sw.mods()) == before
    assert router.relays()  # still master on the switch: PacketIns still reach the kernel
    router.ha.lease.state = LeaseState(True, 2, "b", 3.0, 3.0)  # renewed, with a new generation
    run(core, sw, now=3.0)
    assert router.ha.role is Role.MASTER and prefixes(5, start=30) <= on_switch(sw).keys()


def test_held_host_entries_are_the_neighbours_to_resolve():
    import ipaddress

    from taprouter import prefix as pfx
    from taprouter.controller.router import held_neighbours
    from taprouter.routing.model import Address, NeighbourKey

    def pk(text):
        return pfx.from_network(ipaddress.ip_network(text))

    addresses = [Address(11, ipaddress.ip_interface("10.0.1.1/24")), Address(12, ipaddress.ip_interface("2001:db8:2::1/64")),
                 Address(12, ipaddress.ip_interface("fe80::1/64"))]
    held = {pk("10.0.1.7/32"): 3, pk("10.9.0.0/16"): 3, pk("2001:db8:2::9/128"): 4, pk("10.7.7.7/32"): 5,
            pk("fe80::9/128"): 6}
    assert held_neighbours(held, addresses) == {NeighbourKey(11, ipaddress.ip_address("10.0.1.7")),
                                                NeighbourKey(12, ipaddress.ip_address("2001:db8:2::9"))}
