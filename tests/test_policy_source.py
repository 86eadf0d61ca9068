"""The daemon's policy source (policy/source.py) against a real SQLite store, with in-memory routers
that record what they are handed: the routers are not under test here, the source is.

Covered: the first read; a notification re-reading only the policies it names and answering with
the router's `applied`; plain SQL picked up by the generation; expiry handed over at start, and a
re-enabling handed over as such; states and counters written back, only when they changed, and
kept across a restart of the daemon and across the switch's counts starting again; a store that
cannot be opened or read, retried and reported, the routers keeping their policies meanwhile.
"""

from __future__ import annotations

import shutil
import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Mapping

import pytest

from policyhelp import write_config
from taprouter import config
from taprouter.controller.router import PolicyReport
from taprouter.policy import source as source_module
from taprouter.policy.model import Policy, State, parse
from taprouter.policy.source import PolicySource
from taprouter.policy.store import Store

WAIT = 5.0  # seconds any one expectation may take; the source's intervals are shrunk to ~0.05 s


@dataclass(frozen=True)
class Handed:
    """One set_policies call, as the source made it."""

    policies: tuple[Policy, ...]
    reenabled: tuple[int, ...]
    expired: dict[int, float]

    def names(self) -> dict[str, Policy]:
        return {p.name: p for p in self.policies}


class RecordingRouter:
    """A PolicyRouter that keeps what it is handed and reports what the test sets."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.handed: list[Handed] = []
        self.waited: list[tuple[int, float]] = []
        self.applies = True  # what wait_applied answers
        self.policy_report = PolicyReport.given({})
        self._lock = threading.Lock()

    def set_policies(self, policies: tuple[Policy, ...], reenabled: Iterable[int] = (),
                     expired: Mapping[int, float] | None = None) -> int:
        with self._lock:
            self.handed.append(Handed(tuple(policies), tuple(reenabled), dict(expired or {})))
            return len(self.handed)

    def wait_applied(self, ticket: int, timeout: float) -> bool:
        self.waited.append((ticket, timeout))
        return self.applies and ticket == len(self.handed)

    def report(self, states: Mapping[int, State] = {}, counters: Mapping[int, tuple[int, int]] = {},
               expired: Mapping[int, float] = {}) -> None:
        self.policy_report = PolicyReport.given({pid: (s, "") for pid, s in states.items()}, dict(expired),
                                                dict(counters))

    @property
    def last(self) -> Handed:
        return self.handed[-1]


class CountingStore(Store):
    """The real store, counting the source's generation checks and status writes."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.checks = 0
        self.writes: list[list] = []

    def generation(self) -> int:
        self.checks += 1
        return super().generation()

    def write_statuses(self, statuses) -> None:
        statuses = list(statuses)
        super().write_statuses(statuses)
        self.writes.append(statuses)


def wait_until(condition: Callable[[], object], what: str, timeout: float = WAIT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"not within {timeout} s: {what}")


@pytest.fixture(autouse=True)
def quick(monkeypatch):
    monkeypatch.setattr(source_module, "GENERATION_POLL", 0.05)
    monkeypatch.setattr(source_module, "GENERATION_MAX", 0.1)
    monkeypatch.setattr(source_module, "WRITE_EVERY", 0.05)
    monkeypatch.setattr(source_module, "APPLY_WAIT", 1.0)


class Lab:
    """A SQLite database, a store on it for the test's own writes, and sources started on it."""

    def __init__(self, tmp_path: Path, template: Path) -> None:
        self.path = tmp_path / "lib" / "taprouter.db"
        self.path.parent.mkdir()
        shutil.copyfile(template, self.path)
        self.config = config.load(write_config(tmp_path, f"sqlite:///{self.path}"))
        self.store = Store.open(self.config, user="tester")
        self.sources: list[PolicySource] = []
        self.stores: list[CountingStore] = []  # each one the sources opened, in order
        self.broken: str | None = None  # while set, opening the store fails with this

    def add(self, name: str, router: str = "r1", **fields) -> Policy:
        return self.store.add(parse(router, name, {"action": "drop", **fields}))

    def sql(self, *statements: str) -> None:
        """Plain SQL, behind the store's back (as an operator's script would)."""
        db = sqlite3.connect(self.path)
        try:
            for statement in statements:
                db.execute(statement)
            db.commit()
        finally:
            db.close()

    def open(self) -> CountingStore:
        if self.broken:
            raise OSError(self.broken)
        store = CountingStore.open(self.config, user="daemon")
        store.thread = threading.current_thread().name
        self.stores.append(store)
        return store

    def readers(self) -> list[CountingStore]:
        """The stores the source's reading thread opened (its writing thread opens its own)."""
        return [s for s in self.stores if s.thread == "policies"]

    def writes(self) -> list[list]:
        """Every write of statuses, by any source's writing thread, in order."""
        return [w for s in self.stores for w in s.writes]

    def start(self, *routers: RecordingRouter) -> PolicySource:
        routers = routers or (RecordingRouter("r1"), RecordingRouter("r2"))
        source = PolicySource(self.open, {r.name: r for r in routers})
        source.start()
        self.sources.append(source)
        wait_until(lambda: all(r.handed for r in routers), "every router handed its policies")
        return source

    def stop(self, source: PolicySource) -> None:
        source.stop()
        source._thread.join(WAIT)
        assert not source._thread.is_alive()

    def statuses(self) -> dict[int, tuple]:
        db = sqlite3.connect(self.path)
        try:
            rows = db.execute("SELECT policy_id, state, packets, bytes, updated_at FROM taprouter_policy_status")
            return {r[0]: r[1:] for r in rows}
        finally:
            db.close()


@pytest.fixture
def lab(tmp_path, sqlite_template):
    lab = Lab(tmp_path, sqlite_template)
    yield lab
    for source in lab.sources:
        source.stop()
    for source in lab.sources:
        source._thread.join(WAIT)


def router_of(source: PolicySource, name: str = "r1") -> RecordingRouter:
    return source.routers[name]


# --- reading ----------------------------------------------------------------------------------------

def test_start_hands_every_router_all_of_its_policies(lab):
    a = lab.add("a", dst="10.9.0.0/16")
    b = lab.add("b", dst="10.8.0.0/16", enabled="no")
    c = lab.add("c", router="r2", dst="10.7.0.0/16")
    source = lab.start()
    r1, r2 = router_of(source, "r1"), router_of(source, "r2")
    assert len(r1.handed) == 1 and set(r1.last.policies) == {a, b}  # a disabled one too: the router shows it
    assert r2.handed == [Handed((c,), (), {})]
    assert r1.last.reenabled == () and r1.last.expired == {}
    assert source.error is None


def test_a_notification_rereads_the_named_policies_only_and_answers_with_the_routers_applied(lab, monkeypatch):
    monkeypatch.setattr(source_module, "GENERATION_POLL", 60.0)  # no full re-read while this test runs
    monkeypatch.setattr(source_module, "GENERATION_MAX", 60.0)
    lab.add("a", dst="10.9.0.0/16")
    b = lab.add("b", dst="10.8.0.0/16")
    source = lab.start()
    r1, r2 = router_of(source, "r1"), router_of(source, "r2")
    lab.store.update("r1", "a", {"priority": 7})
    lab.store.update("r1", "b", {"priority": 8})
    new = lab.add("n", dst="10.6.0.0/16")
    answer = source.changed("r1", ["a", "n"])
    assert answer == {"router": "r1", "applied": True, "policies": 3}
    assert r1.last.names()["a"].priority == 7 and r1.last.names()["n"] == new
    assert r1.last.names()["b"] == b  # changed in the store, but not named: not read
    assert r1.waited[-1] == (len(r1.handed), source_module.APPLY_WAIT)
    assert len(r2.handed) == 1  # another router's notification is not this one's
    lab.store.delete("r1", "n")
    r1.applies = False  # the switch did not take it in time
    assert source.changed("r1", ["n"]) == {"router": "r1", "applied": False, "policies": 2}
    assert set(r1.last.names()) == {"a", "b"}
    assert source.changed("r1", None)["applied"] is False  # None: all of the router's, b's change with them
    assert r1.last.names()["b"].priority == 8


def test_a_notification_for_an_unknown_router_raises(lab):
    source = lab.start()
    with pytest.raises(KeyError):
        source.changed("r9", ["a"])


def test_plain_sql_is_picked_up_by_the_generation(lab):
    source = lab.start()
    r1 = router_of(source)
    assert r1.last.policies == ()
    started = time.monotonic()
    lab.sql("INSERT INTO taprouter_policy (router, name, action, dst) VALUES ('r1', 'sql', 'drop', '10.5.0.0/16')")
    wait_until(lambda: "sql" in r1.last.names(), "the row written by plain SQL handed over")
    took = time.monotonic() - started
    assert took < 1.5, took  # GENERATION_POLL is 0.05 s here
    lab.sql("UPDATE taprouter_policy SET priority = 3 WHERE name = 'sql'")
    wait_until(lambda: r1.last.names().get("sql") and r1.last.names()["sql"].priority == 3, "the update")
    lab.sql("DELETE FROM taprouter_policy WHERE name = 'sql'")
    wait_until(lambda: r1.last.policies == (), "the delete")


def test_plain_sql_is_picked_up_while_notifications_keep_coming(lab, monkeypatch):
    """A writer that notifies every few milliseconds does not keep the generation from being read."""
    monkeypatch.setattr(source_module, "GENERATION_POLL", 10.0)
    monkeypatch.setattr(source_module, "GENERATION_MAX", 0.2)
    source = lab.start()
    r1, r2 = router_of(source, "r1"), router_of(source, "r2")
    lab.sql("INSERT INTO taprouter_policy (router, name, action) VALUES ('r2', 'sql', 'drop')")
    started = time.monotonic()
    while not r2.last.policies and time.monotonic() - started < WAIT:
        source.changed("r1", ["nothing"])
    took = time.monotonic() - started
    assert [p.name for p in r2.last.policies] == ["sql"] and took < 2.5, took
    assert len(r1.handed) > 3  # the notifications were answered meanwhile


# --- expiry -------------------------------------------------------------------------------------------

def test_policies_the_store_has_as_expired_are_handed_over_as_expired_at_start(lab):
    brief = lab.add("brief", dst="10.9.0.0/16", hard_timeout=60)
    other = lab.add("other", dst="10.8.0.0/16")
    when = datetime(2024, 5, 1, 12, 0, 0, 250000, tzinfo=timezone.utc)
    lab.store.mark_expired(brief.id, when)
    source = lab.start()
    r1 = router_of(source)
    assert set(r1.last.policies) == {brief, other}
    assert r1.last.expired == {brief.id: when.timestamp()}


def test_a_policy_reenabled_in_the_store_is_handed_over_as_reenabled(lab):
    brief = lab.add("brief", dst="10.9.0.0/16", hard_timeout=60)
    other = lab.add("other", dst="10.8.0.0/16", hard_timeout=60)
    now = time.time()
    for pid in (brief.id, other.id):
        lab.store.mark_expired(pid, datetime.fromtimestamp(now, timezone.utc))
    source = lab.start()
    r1 = router_of(source)
    r1.report(states={brief.id: State.EXPIRED, other.id: State.EXPIRED},
              expired={brief.id: now, other.id: now})
    lab.store.enable("r1", "brief")
    assert source.changed("r1", ["brief"])["applied"]
    assert r1.last.reenabled == (brief.id,)  # `other` is still expired in the store: not re-enabled
    r1.report(states={brief.id: State.INSTALLED, other.id: State.EXPIRED}, expired={other.id: now})
    lab.sql(f"UPDATE taprouter_policy_status SET state = 'pending', expired_at = NULL WHERE policy_id = {other.id}",
            f"UPDATE taprouter_policy SET comment = 'back' WHERE id = {other.id}")
    wait_until(lambda: r1.last.reenabled == (other.id,), "the re-enabling by plain SQL")


# --- states and counters --------------------------------------------------------------------------------

def test_states_and_counters_are_written_back_only_when_they_change(lab):
    a = lab.add("a", dst="10.9.0.0/16")
    b = lab.add("b", dst="10.8.0.0/16")
    source = lab.start()
    store = lab.readers()[-1]
    r1 = router_of(source)
    r1.report(states={a.id: State.INSTALLED, b.id: State.PENDING}, counters={a.id: (10, 1000)})
    wait_until(lambda: lab.statuses().get(a.id, ())[:3] == ("installed", 10, 1000), "a's status written")
    assert lab.statuses()[b.id][:3] == ("pending", 0, 0)
    assert source.totals == {a.id: (10, 1000), b.id: (0, 0)}
    assert source.written(a.id).installed_at is not None and source.written(b.id).installed_at is None
    writes, before = len(lab.writes()), lab.statuses()
    checks = store.checks
    wait_until(lambda: store.checks >= checks + 5, "five more rounds of the source")
    assert len(lab.writes()) == writes and lab.statuses() == before  # nothing changed: nothing written
    installed_at = source.written(a.id).installed_at
    r1.report(states={a.id: State.INSTALLED, b.id: State.FAILED}, counters={a.id: (12, 1200)})
    wait_until(lambda: len(lab.writes()) > writes, "the change written")
    written = {s.policy_id: s for s in lab.writes()[-1]}
    assert written[a.id].packets == 12 and written[b.id].state is State.FAILED
    assert written[a.id].installed_at == installed_at  # when it went in, not when it was last written
    wait_until(lambda: lab.statuses()[b.id][0] == "failed", "b failed, in the database")


def test_an_ha_standby_writes_no_states_the_master_does(lab):
    a = lab.add("a", dst="10.9.0.0/16")
    source = lab.start()
    store = lab.readers()[-1]
    r1 = router_of(source)
    r1.writes_store = False  # a standby: its switch is the master's
    r1.report(states={a.id: State.PENDING})
    checks = store.checks
    wait_until(lambda: store.checks >= checks + 5, "five more rounds of the source")
    assert a.id not in lab.statuses() and not lab.writes()
    r1.writes_store = True  # it became master
    r1.report(states={a.id: State.INSTALLED}, counters={a.id: (3, 300)})
    wait_until(lambda: lab.statuses().get(a.id, ())[:3] == ("installed", 3, 300), "the master's state written")


def test_counters_are_kept_across_a_restart_and_across_the_switch_counting_again(lab):
    a = lab.add("a", dst="10.9.0.0/16")
    source = lab.start()
    r1 = router_of(source)
    r1.report(states={a.id: State.INSTALLED}, counters={a.id: (100, 10000)})
    wait_until(lambda: source.totals.get(a.id) == (100, 10000), "the first count")
    r1.report(states={a.id: State.INSTALLED}, counters={a.id: (4, 400)})  # its flows were put in again
    wait_until(lambda: source.totals.get(a.id) == (104, 10400), "the count after the reinstall")
    r1.report(states={a.id: State.INSTALLED}, counters={a.id: (6, 600)})
    wait_until(lambda: lab.statuses()[a.id][1:3] == (106, 10600), "the total written")
    lab.stop(source)

    # A new daemon: the switch's flows outlived the old one, and counted 6 more since its last write.
    again = lab.start(RecordingRouter("r1"), RecordingRouter("r2"))
    r1 = router_of(again)
    r1.report(states={a.id: State.INSTALLED})  # no poll answered yet: the store's total stands
    checks = lab.readers()[-1].checks
    wait_until(lambda: lab.readers()[-1].checks >= checks + 3, "three rounds of the new source")
    assert again.totals == {a.id: (106, 10600)} and lab.statuses()[a.id][1:3] == (106, 10600)
    r1.report(states={a.id: State.INSTALLED}, counters={a.id: (12, 1200)})
    checks = lab.readers()[-1].checks
    wait_until(lambda: lab.readers()[-1].checks >= checks + 3, "three more rounds")
    assert again.totals[a.id] == (106, 10600)  # never below what was stored
    r1.report(states={a.id: State.INSTALLED}, counters={a.id: (20, 2000)})
    wait_until(lambda: again.totals.get(a.id) == (114, 11400), "what the switch counted since")
    r1.report(states={a.id: State.INSTALLED}, counters={a.id: (1, 100)})  # and a switch restart
    wait_until(lambda: again.totals.get(a.id) == (115, 11500), "the count after the switch restarted")
    wait_until(lambda: lab.statuses()[a.id][1:3] == (115, 11500), "the total written")


# --- a store that cannot be read ------------------------------------------------------------------------

def test_a_store_that_cannot_be_opened_is_retried_and_reported(lab):
    lab.add("a", dst="10.9.0.0/16")
    lab.broken = "the database's server is down"
    r1, r2 = RecordingRouter("r1"), RecordingRouter("r2")
    source = PolicySource(lab.open, {"r1": r1, "r2": r2})
    source.start()
    lab.sources.append(source)
    wait_until(lambda: source.error == "the database's server is down", "the failure reported")
    assert r1.handed == [] and r2.handed == []  # nothing read: nothing handed, not an empty set
    answer = source.changed("r1", ["a"], wait=0.2)
    assert answer["applied"] is False and answer["error"]
    lab.broken = None
    wait_until(lambda: r1.handed, "the policies, once the store opens")
    assert [p.name for p in r1.handed[0].policies] == ["a"] and source.error is None


def test_a_store_that_cannot_be_read_is_retried_and_the_routers_keep_their_policies(lab):
    a = lab.add("a", dst="10.9.0.0/16")
    source = lab.start()
    r1 = router_of(source)
    r1.report(states={a.id: State.INSTALLED}, counters={a.id: (50, 5000)})
    wait_until(lambda: lab.statuses().get(a.id, ())[1:3] == (50, 5000), "the count written")
    handed = len(r1.handed)
    lab.sql("ALTER TABLE taprouter_policy RENAME TO taprouter_policy_away")  # reads fail from now
    answer = source.changed("r1", ["a"])
    assert answer["applied"] is False and "taprouter_policy" in answer["error"]
    assert "taprouter_policy" in source.error
    checks = sum(s.checks for s in lab.stores)
    wait_until(lambda: sum(s.checks for s in lab.stores) >= checks + 3, "three more tries")
    assert len(r1.handed) == handed  # nothing handed while the store cannot be read
    assert len(lab.readers()) > 1  # each try opens the store afresh
    r1.report(states={a.id: State.INSTALLED}, counters={a.id: (60, 6000)})
    lab.sql("ALTER TABLE taprouter_policy_away RENAME TO taprouter_policy")
    wait_until(lambda: source.error is None, "the store readable again")
    assert r1.last.names() == {"a": a}
    wait_until(lambda: lab.statuses()[a.id][1:3] == (60, 6000), "the count written again")
    checks = sum(s.checks for s in lab.stores)
    wait_until(lambda: sum(s.checks for s in lab.stores) >= checks + 3, "three more rounds")
    assert source.totals[a.id] == (60, 6000)  # counted once, not again on top of the stored total
    lab.add("b", dst="10.8.0.0/16")
    assert source.changed("r1", ["b"])["applied"] and set(r1.last.names()) == {"a", "b"}


def test_a_policy_reenabled_while_the_store_could_not_be_read_is_reenabled_once_it_can(lab):
    brief = lab.add("brief", dst="10.9.0.0/16", hard_timeout=60)
    now = time.time()
    lab.store.mark_expired(brief.id, datetime.fromtimestamp(now, timezone.utc))
    source = lab.start()
    r1 = router_of(source)
    assert r1.last.expired == {brief.id: pytest.approx(now)}
    r1.report(states={brief.id: State.EXPIRED}, expired={brief.id: now})
    lab.sql("ALTER TABLE taprouter_policy RENAME TO taprouter_policy_away")
    assert source.changed("r1", ["brief"])["applied"] is False and source.error
    # Meanwhile an operator's script clears the expiry (as `policy enable` would).
    lab.sql(f"UPDATE taprouter_policy_status SET state = 'pending', expired_at = NULL WHERE policy_id = {brief.id}",
            "ALTER TABLE taprouter_policy_away RENAME TO taprouter_policy")
    wait_until(lambda: source.error is None, "the store readable again")
    assert r1.last.reenabled == (brief.id,) and r1.last.expired == {}


# --- routers a reload starts and removes --------------------------------------------------------------

def test_a_router_a_reload_starts_gets_its_policies_and_one_it_removes_is_forgotten(lab):
    a = lab.add("a", dst="10.9.0.0/16")
    c = lab.add("c", router="r2", dst="10.7.0.0/16")
    r1 = RecordingRouter("r1")
    source = lab.start(r1)  # r2 is in the store but not running yet
    assert set(r1.last.policies) == {a}
    r2 = RecordingRouter("r2")
    source.routers_changed({"r2": r2}, ["r1"])
    wait_until(lambda: r2.handed, "the started router handed its policies")
    assert set(r2.last.policies) == {c} and r2.last.expired == {}
    assert set(source.routers) == {"r2"}
    with pytest.raises(KeyError):
        source.changed("r1", ["a"])
    d = lab.add("d", router="r2", dst="10.6.0.0/16")
    assert source.changed("r2", ["d"])["applied"] is True
    assert set(r2.last.policies) == {c, d}
    assert len(r1.handed) == 1  # nothing more for the removed one
