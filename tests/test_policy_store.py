"""The policy store on SQLite and PostgreSQL: what it refuses (naming the field, storing nothing),
what it writes, and the audit entries each write leaves."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone

import pytest
from django.db import connections

from policyhelp import open_store
from taprouter.policy.model import PolicyError, State, Status, parse
from taprouter.policy.store import effective


@pytest.fixture
def store(tmp_path, database_url):
    return open_store(tmp_path, database_url)


def p(name, router="r1", **fields):
    return parse(router, name, {"action": "drop", **fields})


def audit(store):
    from taprouter.db.models import AuditEntry

    return list(AuditEntry.objects.using(store.alias).order_by("id").values_list("who", "action", "router", "name",
                                                                                 "before", "after"))


def snapshot(store):
    """Everything the store holds, to show a refusal changed nothing."""
    return store.policies(), store.generation(), audit(store)


def test_add_then_read_back(store):
    added = store.add(p("no-telnet", dst="10.0.2.0/24", proto="tcp", dport="23", comment="old habits"))
    assert added.id is not None
    assert store.get("r1", "no-telnet") == added
    assert store.policies() == [added] and store.policies("r2") == []
    assert store.by_ids([added.id, 999]) == {added.id: added}
    assert audit(store) == [("tester", "add", "r1", "no-telnet", None,
                             {"router": "r1", "name": "no-telnet", "priority": 100, "dst": "10.0.2.0/24",
                              "proto": "tcp", "dport": 23, "action": "drop", "comment": "old habits"})]


@pytest.mark.parametrize("policy, field, words", [
    (p("x", router="r9"), "router", "'r9' is not a router in"),
    (p("x", action="forward", via="10.9.9.9"), "via", "10.9.9.9 is on no subnet of router r1's ports"),
    (p("x", action="forward", via="2001:db8:2::1"), "via", "is on no subnet"),
    (p("x", action="forward", via="10.0.2.1"), "via", "the router's own address on port 2"),
    (p("taken", dst="10.7.0.0/16"), "name", "'taken' is already a policy of router r1"),
    (p("x", dst="10.5.0.0/24", proto="udp"), "priority", "also the priority of policy 'taken'"),
])
def test_refusals_name_the_field_and_store_nothing(store, policy, field, words):
    store.add(p("taken", dst="10.5.0.0/16"))
    before = snapshot(store)
    with pytest.raises(PolicyError) as info:
        store.add(policy)
    assert info.value.field == field and words in info.value.message
    assert snapshot(store) == before


def test_overlap_at_another_priority_is_fine(store):
    store.add(p("wide", dst="10.0.0.0/8"))
    store.add(p("narrow", dst="10.1.0.0/16", action="permit", priority="200"))
    store.add(p("other-router", router="r2", dst="10.0.0.0/8"))  # priorities are per router
    assert [x.name for x in store.policies()] == ["narrow", "wide", "other-router"]


def test_a_disjoint_policy_at_the_same_priority_is_fine(store):
    store.add(p("a", dst="10.1.0.0/16", proto="tcp", dport="1-1023"))
    store.add(p("b", dst="10.1.0.0/16", proto="tcp", dport="1024-65535"))
    store.add(p("c", dst="10.1.0.0/16", proto="udp"))
    assert len(store.policies()) == 3


def test_update_merges_fields_and_is_checked(store):
    a = store.add(p("a", src="10.4.0.0/16", dst="10.1.0.0/16"))
    b = store.add(p("b", dst="10.2.0.0/16", action="forward", via="10.0.2.9"))
    outcome = store.update("r1", "b", {"action": "drop", "dst": "", "src": "10.3.0.0/16"})
    # The next hop went with the forward action; the id stays (the daemon's cookies carry it).
    assert outcome.changed and outcome.policy == replace(p("b", src="10.3.0.0/16"), id=b.id)
    assert store.get("r1", "b") == outcome.policy and store.get("r1", "a") == a
    assert not store.update("r1", "b", {"src": "10.3.0.0/16"}).changed
    assert store.update("r1", "b", {"action": "forward", "via": "10.0.1.5"}).policy.via is not None
    assert store.update("r1", "b", {"action": "forward", "comment": "kept"}).policy.via is not None
    store.update("r1", "b", {"action": "drop", "comment": ""})
    before = snapshot(store)
    with pytest.raises(PolicyError) as info:
        store.update("r1", "b", {"src": "10.4.0.0/24"})  # now it meets a at one priority
    assert info.value.field == "priority"
    with pytest.raises(PolicyError) as info:
        store.update("r1", "b", {"sport": "99"})
    assert info.value.field == "sport"
    with pytest.raises(PolicyError) as info:
        store.update("r1", "nope", {"priority": "5"})
    assert info.value.field == "name"
    assert snapshot(store) == before
    assert [a[1] for a in audit(store)] == ["add", "add"] + ["set"] * 4


def test_disable_enable_delete_and_their_audit(store):
    added = store.add(p("a", dst="10.1.0.0/16"))
    assert store.disable("r1", "a").changed and not store.disable("r1", "a").changed
    assert store.get("r1", "a").enabled is False
    assert store.enable("r1", "a").changed and not store.enable("r1", "a").changed
    assert store.delete("r1", "a") == added.id
    assert store.policies() == []
    with pytest.raises(PolicyError):
        store.delete("r1", "a")
    entries = audit(store)
    assert [e[1] for e in entries] == ["add", "disable", "enable", "del"]
    assert entries[1][4]["name"] == "a" and entries[1][5]["enabled"] is False and "enabled" not in entries[1][4]
    assert entries[3][5] is None and entries[3][4]["dst"] == "10.1.0.0/16"


def test_state_without_a_daemon_and_after_it_wrote(store):
    on, off = store.add(p("on", dst="10.1.0.0/16")), store.add(p("off", dst="10.2.0.0/16", enabled="no"))
    statuses = store.statuses()
    assert effective(on, statuses.get(on.id)).state is State.PENDING
    assert effective(off, statuses.get(off.id)).state is State.DISABLED
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    generation = store.generation()
    store.write_statuses([Status(on.id, State.INSTALLED, installed_at=when, packets=7, bytes=700),
                          Status(off.id, State.FAILED, error="meter refused")])
    assert store.generation() == generation  # the daemon's writes do not move the counter
    statuses = store.statuses()
    assert statuses[on.id] == Status(on.id, State.INSTALLED, "", when, None, 7, 700)
    assert effective(off, statuses[off.id]).state is State.DISABLED  # disabled wins over a stale status
    store.write_statuses([Status(on.id, State.INSTALLED, installed_at=when, packets=9, bytes=900)])
    assert store.statuses([on.id])[on.id].packets == 9


def test_reenabling_an_expired_policy_clears_its_expiry(store):
    added = store.add(p("timed", dst="10.1.0.0/16", hard_timeout="60"))
    when = datetime(2026, 1, 2, tzinfo=timezone.utc)
    store.mark_expired(added.id, when)
    generation = store.generation()
    assert store.statuses()[added.id].state is State.EXPIRED and store.statuses()[added.id].expired_at == when
    assert store.enable("r1", "timed").changed
    status = store.statuses()[added.id]
    assert status.state is State.PENDING and status.expired_at is None
    assert store.generation() != generation  # the daemon learns of it
    assert audit(store)[-1][1] == "enable"


def test_a_deleted_policys_status_goes_with_it(store):
    a, b = store.add(p("a", dst="10.1.0.0/16")), store.add(p("b", dst="10.2.0.0/16"))
    store.write_statuses([Status(a.id, State.INSTALLED), Status(b.id, State.INSTALLED)])
    store.delete("r1", "a")
    with connections[store.alias].cursor() as cursor:  # plain SQL leaves b's status behind
        cursor.execute("DELETE FROM taprouter_policy WHERE name = 'b'")
    store.write_statuses([])
    assert store.statuses() == {}


def test_a_row_plain_sql_made_wrong_is_reported_not_used(store):
    with connections[store.alias].cursor() as cursor:
        cursor.execute("INSERT INTO taprouter_policy (router, name, action, dst) VALUES ('r1', 'bad', 'drop', "
                       "'10.0.0.1/8')")
    assert store.policies() == []
    [bad] = store.invalid()
    assert (bad.router, bad.name, bad.error.field) == ("r1", "bad", "dst")
    with pytest.raises(PolicyError) as info:
        store.get("r1", "bad")
    assert info.value.field == "dst" and "invalid" in info.value.message
    outcome = store.update("r1", "bad", {"dst": "10.0.0.0/8"})  # set repairs it
    assert outcome.changed and store.invalid() == [] and store.policies() == [outcome.policy]


def test_each_write_says_how_far_it_moved_the_generation(store, tmp_path):
    # What a writer tells the daemon, so that its own move costs the daemon no reading of everything.
    def moved(write):
        before = store.generation()
        write()
        assert store.last_write[0] == before and store.last_write[1] == store.generation()
        return store.last_write[1] - store.last_write[0]

    assert moved(lambda: store.add(p("a", dst="10.1.0.0/16"))) == 1
    assert moved(lambda: store.update("r1", "a", {"priority": 7})) == 1
    assert moved(lambda: store.update("r1", "a", {"priority": 7})) == 0  # nothing to change
    assert moved(lambda: store.disable("r1", "a")) == 1
    assert moved(lambda: store.enable("r1", "a")) == 1
    assert moved(lambda: store.delete("r1", "a")) == 1
    (tmp_path / "i.yaml").write_text("policies:\n  r1:\n  - {name: b, action: drop}\n  - {name: c, action: permit, priority: 5}\n")
    assert moved(lambda: store.import_file(tmp_path / "i.yaml")) >= 1
    with pytest.raises(PolicyError):
        store.add(p("b"))  # refused: no write, nothing to tell
    assert store.last_write is None
