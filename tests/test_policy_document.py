"""Export and import: the YAML round-trips exactly, an import is one transaction that names the key
at fault, and --dry-run writes nothing."""

from __future__ import annotations

import pytest

from policyhelp import open_store
from taprouter.policy import document
from taprouter.policy.model import PolicyError, parse

EVERY_FIELD = {"priority": "300", "in_port": "1,2", "src": "192.168.0.0/16", "dst": "10.2.0.0/24",
               "proto": "tcp", "sport": "1024-65535", "dport": "443", "action": "forward", "via": "10.0.2.9",
               "to_router": "yes", "idle_timeout": "30", "hard_timeout": "600", "enabled": "no",
               "comment": "all: of them, 'quoted' \u00e9"}
SAMPLE = [
    parse("r1", "every-field", EVERY_FIELD),
    parse("r1", "icmp", {"proto": "icmp", "icmp_type": "8", "action": "police", "rate": "100pps"}),
    parse("r1", "v6", {"dst": "2001:db8:9::/48", "action": "permit", "priority": "0"}),
    parse("r2", "proto-47", {"proto": "47", "action": "drop"}),
]


@pytest.fixture
def store(tmp_path, database_url):
    return open_store(tmp_path, database_url)


@pytest.mark.parametrize("policy", SAMPLE, ids=lambda p: p.name)
def test_fields_are_parses_inverse(policy):
    assert parse(policy.router, policy.name, document.fields(policy)) == policy


def test_export_then_import_round_trips_exactly(store, tmp_path):
    for policy in SAMPLE:
        store.add(policy)
    before = store.policies()
    text = store.export()
    assert text == store.export()  # deterministic
    assert "  r2:\n  - name: proto-47\n" in text
    path = tmp_path / "p.yaml"
    path.write_text(text)
    generation = store.generation()
    assert not store.import_file(path)  # nothing differs
    assert store.generation() == generation and store.policies() == before
    for policy in before:  # into an empty database: the same policies, and the same file
        store.delete(policy.router, policy.name)
    difference = store.import_file(path)
    assert [p.name for p in difference.adds] == ["every-field", "icmp", "v6", "proto-47"]
    assert [document.fields(p) for p in store.policies()] == [document.fields(p) for p in before]
    assert store.export() == text


def test_import_adds_changes_and_deletes_keeping_ids(store, tmp_path):
    kept = store.add(parse("r1", "kept", {"dst": "10.1.0.0/16", "action": "drop"}))
    changed = store.add(parse("r1", "changed", {"dst": "10.2.0.0/16", "action": "drop"}))
    store.add(parse("r1", "gone", {"dst": "10.3.0.0/16", "action": "drop"}))
    other = store.add(parse("r2", "untouched", {"action": "drop"}))
    path = tmp_path / "p.yaml"
    path.write_text("policies:\n  r1:\n  - {name: kept, dst: 10.1.0.0/16, action: drop}\n"
                    "  - {name: changed, dst: 10.2.0.0/16, action: permit}\n"
                    "  - {name: new, dst: 10.4.0.0/16, action: drop}\n")
    generation, audit_before = store.generation(), _audit_count(store)
    dry = store.import_file(path, dry_run=True)
    assert ([p.name for p in dry.adds], [a.name for _, a in dry.changes], [p.name for p in dry.deletes]) == \
        (["new"], ["changed"], ["gone"])
    assert store.generation() == generation and _audit_count(store) == audit_before  # --dry-run wrote nothing
    assert store.import_file(path) == dry
    assert store.get("r1", "kept") == kept and store.get("r1", "changed").id == changed.id
    assert store.get("r1", "changed").action.value == "permit"
    assert sorted(p.name for p in store.policies("r1")) == ["changed", "kept", "new"]
    assert store.policies("r2") == [other]
    assert _audit_count(store) == audit_before + 3 and dry.names() == {"r1": ["changed", "gone", "new"]}


def _audit_count(store) -> int:
    from taprouter.db.models import AuditEntry

    return AuditEntry.objects.using(store.alias).filter(action="import").count()


@pytest.mark.parametrize("text, field", [
    ("policies:\n  r9: []\n", "policies.r9"),
    ("policies:\n  r1:\n  - {name: a, action: drop}\n  - {name: b, action: drop, dport: 80}\n",
     "policies.r1[1].dport"),
    ("policies:\n  r1:\n  - {name: a, action: drop, dst: 10.0.0.0/8}\n  - {name: a, action: drop}\n",
     "policies.r1[1].name"),
    ("policies:\n  r1:\n  - {name: a, action: forward, via: 10.9.0.1}\n", "policies.r1[0].via"),
    ("policies:\n  r1:\n  - {name: a, action: drop, dst: 10.0.0.0/8}\n  - {name: b, action: permit, dst: 10.1.0.0/16}\n",
     "policies.r1[1].priority"),
    ("policies:\n  r1:\n  - {name: a, action: drop, action: permit}\n", "policies.r1[0].action"),
    ("routers: {}\n", "policies"),
    ("policies: [\n", "file"),
])
def test_a_refused_import_names_the_key_and_writes_nothing(store, tmp_path, text, field):
    store.add(parse("r1", "existing", {"action": "drop", "priority": "5"}))
    path = tmp_path / "p.yaml"
    path.write_text(text)
    before = store.policies(), store.generation()
    with pytest.raises(PolicyError) as info:
        store.import_file(path)
    assert info.value.field == field
    assert (store.policies(), store.generation()) == before
