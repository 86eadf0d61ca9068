"""The HA lease against a real PostgreSQL server (tests/pgcluster.py), and the role it gives."""

from __future__ import annotations

import itertools
import time

import psycopg
import pytest

from taprouter.ha.lease import Lease
from taprouter.ha.roles import LeaseState, Role, bird_converged, decide, lock_key

_dbs = itertools.count()


@pytest.fixture
def ha_url(pg_cluster) -> str:
    name = f"taprouter_ha_{next(_dbs)}"
    pg_cluster.create_database(name)
    return pg_cluster.url(name)


def pair(url: str, lease_seconds: float = 1.0) -> tuple[Lease, Lease]:
    return (Lease(url, "r1", 0x1, "a", lease_seconds), Lease(url, "r1", 0x1, "b", lease_seconds))


def until_held(lease: Lease, now: float, timeout: float = 5.0):
    """Rounds until `lease` holds (a session ended by the server or a client goes in milliseconds,
    but not at once); returns the state."""
    deadline = time.monotonic() + timeout
    while True:
        state = lease.round(now)
        if state.held or time.monotonic() > deadline:
            return state
        time.sleep(0.05)
        now += 0.05


def test_one_holder_then_the_other_after_its_session_ends(ha_url):
    a, b = pair(ha_url)
    try:
        assert a.round(0.0).held
        first = a.state.generation
        assert first > 1_700_000_000_000  # the server's clock in ms: past a database made afresh
        seen = b.round(0.0)
        assert not seen.held and seen.holder == "a" and seen.generation == first
        assert a.round(0.1).held and a.state.generation == first  # a renewal keeps the generation
        a._close()  # as kill -9 does: the session ends, the lock frees at once
        took = until_held(b, 0.2)
        assert took.held and took.generation > first and took.holder == "b"
    finally:
        a.stop()
        b.stop()


def test_a_holder_that_stops_renewing_is_ended_and_fences(ha_url):
    a, b = pair(ha_url, lease_seconds=0.5)
    try:
        assert a.round(0.0).held
        first = a.state.generation
        time.sleep(0.7)  # a is "stopped": no renewal, its session still open
        assert not b.round(1.0).held  # finds the row expired and ends a's backend
        took = until_held(b, 1.1)
        assert took.held and took.generation > first
        # a resumes: its renewal fails on the ended session; it keeps `held` with an error, so fences
        resumed = a.round(1.2)
        assert resumed.error and decide(resumed, Role.MASTER, 1.2, 0.5) is Role.FENCED
        again = a.round(1.3)  # a new session: the lock is b's
        assert not again.held and again.holder == "b"
        assert decide(again, Role.FENCED, 1.3, 0.5) is Role.STANDBY
    finally:
        a.stop()
        b.stop()


def test_generation_grows_even_when_the_clock_does_not(ha_url):
    a, b = pair(ha_url)
    try:
        a.round(0.0)
        with psycopg.connect(**__import__("taprouter.ha.lease", fromlist=["x"]).connect_args(ha_url)) as conn:
            conn.execute("UPDATE taprouter_ha_lease SET generation = generation + 10000000")  # a clock behind
            ahead = conn.execute("SELECT generation FROM taprouter_ha_lease").fetchone()[0]
        a._close()
        assert until_held(b, 0.1).generation == ahead + 1
    finally:
        a.stop()
        b.stop()


def test_clean_stop_hands_over(ha_url):
    a, b = pair(ha_url)
    try:
        a.round(0.0)
        a.stop()
        assert until_held(b, 0.1).held
    finally:
        b.stop()


def test_database_gone_is_an_error_not_a_crash():
    lease = Lease("postgresql://nobody@/nowhere?host=/nonexistent-dir", "r1", 1, "a", 1.0)
    state = lease.round(0.0)
    assert state.error and not state.held
    assert decide(state, Role.STARTING, 0.0, 1.0) is Role.STARTING


@pytest.mark.parametrize("lease, was, now, role", [
    (LeaseState(True, 3, "a", 10.0, 10.0), Role.STANDBY, 10.5, Role.MASTER),
    (LeaseState(True, 3, "a", 10.0, 10.0), Role.MASTER, 12.5, Role.FENCED),  # renewals stopped
    (LeaseState(True, 3, "a", 10.0, 10.0, "server gone"), Role.MASTER, 13.0, Role.FENCED),
    (LeaseState(True, 4, "a", 20.0, 20.0), Role.FENCED, 20.1, Role.MASTER),  # renewed again
    (LeaseState(False, 4, "b", None, 20.0), Role.FENCED, 20.1, Role.STANDBY),  # b took it meanwhile
    (LeaseState(False, 4, "b", None, 20.0), Role.MASTER, 20.1, Role.STANDBY),
    (LeaseState(), Role.STARTING, 1.0, Role.STARTING),
    (LeaseState(False, 0, "", None, None, "refused"), Role.STARTING, 1.0, Role.STARTING),
    (LeaseState(False, 2, "a", None, 1.0, "gone"), Role.STANDBY, 5.0, Role.STANDBY),
])
def test_decide(lease, was, now, role):
    assert decide(lease, was, now, 2.0) is role


def test_lock_key_is_a_signed_bigint_per_dpid():
    keys = {lock_key(d) for d in range(1000)}
    assert len(keys) == 1000 and all(-2**63 <= k < 2**63 for k in keys)


def test_bird_converged():
    assert bird_converged([("Device", "up", ""), ("BGP", "up", "Established"), ("OSPF", "up", "Running")])
    assert not bird_converged([("BGP", "start", "Active"), ("OSPF", "up", "Running")])
    assert bird_converged([("BGP", "down", "Disabled")])
    assert bird_converged([])
    assert bird_converged([("OSPF", "up", "Running")], ["Full/DR", "2-Way/DROther"])
    assert not bird_converged([("OSPF", "up", "Running")], ["Full/DR", "Loading/BDR"])
    assert not bird_converged([("OSPF", "up", "Running")], ["ExStart/-"])
