"""The daemon's thread on the policy store (policy/source.py), on both backends: a notification
re-reads the policies it names and hands the router the rest as they were; a reload on a moved
generation hands over only what the notifications did not bring (a plain-SQL change)."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connections

from policyhelp import open_store
from taprouter.controller.router import PolicyReport
from taprouter.policy import source as source_module
from taprouter.policy.model import parse
from taprouter.policy.source import PolicySource


class Router:
    """Stands in for controller/router.py's Router: takes the policies, says the switch has them."""

    name = "r1"

    def __init__(self) -> None:
        self.policy_report = PolicyReport.given({})
        self.handed: list[tuple] = []
        self.lock = threading.Lock()

    def set_policies(self, policies, reenabled=(), expired=None) -> int:
        with self.lock:
            self.handed.append(tuple(policies))
            return len(self.handed)

    def wait_applied(self, ticket: int, timeout: float) -> bool:
        return True

    def last(self) -> dict:
        with self.lock:
            return {p.name: p for p in self.handed[-1]}


@pytest.fixture
def running(tmp_path, database_url, monkeypatch):
    """A store with three policies, and a source on it whose generation checks come every 0.2 s."""
    monkeypatch.setattr(source_module, "GENERATION_POLL", 0.2)
    monkeypatch.setattr(source_module, "GENERATION_MAX", 0.2)
    writer = open_store(tmp_path, database_url)
    for i in range(3):
        writer.add(parse("r1", f"p{i}", {"action": "drop", "dst": f"10.9.{i}.0/24"}))
    router = Router()
    src = PolicySource(lambda: open_store(tmp_path, database_url, user="daemon"), {"r1": router})
    src.start()
    wait(lambda: router.handed, "the first read")
    try:
        yield writer, router, src
    finally:
        src.stop()


def wait(predicate, what: str, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.02)
    return value


def test_a_notification_reads_the_named_policies_and_hands_the_others_over_as_they_were(running):
    writer, router, src = running
    before = router.last()
    writer.update("r1", "p1", {"priority": 7})
    writer.delete("r1", "p2")
    writer.add(parse("r1", "p3", {"action": "drop", "dst": "10.9.3.0/24"}))
    answer = src.changed("r1", ["p1", "p2", "p3"])
    assert answer["applied"] and answer["policies"] == 3
    after = router.last()
    assert sorted(after) == ["p0", "p1", "p3"] and after["p1"].priority == 7
    assert after["p0"] is before["p0"]  # not read again: the planner tells it unchanged by identity


def _reloads(src, since: int) -> list[int | None]:
    """The generations of the readings of every policy since the first `since` of them (the
    source's own record: log capture misses records when another test's thread logs at once)."""
    return src.loads[since:]


def test_a_reload_hands_over_nothing_the_notifications_brought(running):
    writer, router, src = running
    start = len(src.loads)
    writer.update("r1", "p1", {"priority": 7})
    src.changed("r1", ["p1"])  # a writer that does not say how far its write moved the generation
    handed = len(router.handed)
    # So the next check reads every row again, and finds nothing the notification had not brought.
    seen = writer.generation()
    wait(lambda: seen in _reloads(src, start), "a reload at the new generation")
    assert len(router.handed) == handed


def test_writes_whose_moves_join_up_cost_no_reload_and_one_that_does_not_does(running):
    writer, router, src = running
    start = len(src.loads)
    writer.update("r1", "p1", {"priority": 7})
    first = writer.last_write
    writer.update("r1", "p2", {"priority": 8})
    second = writer.last_write
    assert first[1] == first[0] + 1 and second[0] == first[1]
    src.changed("r1", ["p2"], moved=second)  # out of order: waits for the move before it
    src.changed("r1", ["p1"], moved=first)
    time.sleep(1.0)  # five generation checks
    assert not _reloads(src, start)
    assert (router.last()["p1"].priority, router.last()["p2"].priority) == (7, 8)
    # Plain SQL, then a writer that says what its own write moved: the move before it is nobody's.
    with connections[writer.alias].cursor() as cursor:
        cursor.execute("UPDATE taprouter_policy SET priority = 9 WHERE name = 'p0'")
    writer.update("r1", "p1", {"priority": 6})
    src.changed("r1", ["p1"], moved=writer.last_write)
    wait(lambda: router.last()["p0"].priority == 9, "the plain-SQL change, by a reload")
    assert len(_reloads(src, start)) == 1


def test_a_plain_sql_change_is_handed_over_by_the_next_generation_check(running):
    writer, router, src = running
    before = router.last()
    with connections[writer.alias].cursor() as cursor:
        cursor.execute("UPDATE taprouter_policy SET priority = 9 WHERE name = 'p0'")
    after = wait(lambda: (last := router.last())["p0"].priority == 9 and last, "the plain-SQL change")
    assert after["p1"] is before["p1"] and after["p2"] is before["p2"]  # the unchanged rows, not parsed again


def test_every_name_of_an_import_in_one_notification(running, tmp_path):
    writer, router, src = running
    names = [f"p{i}" for i in range(3)] + [f"q{i:04d}" for i in range(2000)]
    lines = ["policies:", "  r1:"] + [f"  - {{name: {name}, action: drop, dst: 10.{100 + i // 256}.{i % 256}.0/24}}"
                                      for i, name in enumerate(names)]
    (tmp_path / "import.yaml").write_text("\n".join(lines) + "\n")
    difference = writer.import_file(tmp_path / "import.yaml")
    answer = src.changed("r1", difference.names()["r1"])
    assert answer["applied"] and answer["policies"] == 2003
    assert sorted(router.last()) == sorted(names)


def test_states_and_counters_are_written_back_as_they_change_in_batches(running, monkeypatch):
    from taprouter.policy.model import State

    writer, router, src = running
    monkeypatch.setattr(source_module, "WRITE_EVERY", 0.1)
    monkeypatch.setattr(source_module, "WRITE_BATCH", 1)  # a status a round, between notifications
    ids = {name: p.id for name, p in router.last().items()}
    states = {pid: (State.INSTALLED, "") for pid in ids.values()}
    router.policy_report = PolicyReport.given(states, {}, {ids["p0"]: (3, 300)})
    wait(lambda: writer.statuses().get(ids["p0"]) and writer.statuses()[ids["p0"]].packets == 3, "the first write")
    first = writer.statuses()[ids["p0"]]
    assert first.state is State.INSTALLED and first.installed_at is not None
    wait(lambda: len(writer.statuses()) == 3, "every status, a batch at a time")
    assert all(status.state is State.INSTALLED for status in writer.statuses().values())
    router.policy_report = PolicyReport.given(dict(states), {}, {ids["p0"]: (5, 500)})  # only a counter moved
    wait(lambda: writer.statuses()[ids["p0"]].packets == 5, "the counter")
    assert writer.statuses()[ids["p0"]].installed_at == first.installed_at


def test_a_notification_does_not_wait_behind_a_slow_status_write(running, monkeypatch):
    from taprouter.policy.model import State
    from taprouter.policy.store import Store

    writer, router, src = running
    monkeypatch.setattr(source_module, "WRITE_EVERY", 0.1)
    writing, release = threading.Event(), threading.Event()

    def slow(store, statuses):
        writing.set()
        release.wait(5)

    monkeypatch.setattr(Store, "write_statuses", slow)
    ids = [p.id for p in router.last().values()]
    router.policy_report = PolicyReport.given({pid: (State.INSTALLED, "") for pid in ids})
    assert writing.wait(5)
    try:
        writer.update("r1", "p1", {"priority": 7})
        started = time.monotonic()
        assert src.changed("r1", ["p1"], moved=writer.last_write)["applied"]
        assert time.monotonic() - started < 2.0 and router.last()["p1"].priority == 7
    finally:
        release.set()
