"""The policy benchmark's workload (benchmarks/policy_workload.py): its changes, and its check of
what the switch holds of a policy against the policy's own fields, on lines as ovs-ofctl prints them."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "netns_tests")]

from benchmarks.policy_workload import ROUND, Kind, Workload, covered, initial, mismatch  # noqa: E402
from ofctl import parse_flow  # noqa: E402
from taprouter.policy.model import overlaps, parse  # noqa: E402

COOKIE = "0x7a70000400000005"


def policy(**fields):
    return dataclasses.replace(parse("r1", "p", {"action": "drop", **fields}), id=5)


def flows(*lines: str) -> list:
    return [parse_flow(f" cookie={COOKIE}, table=1, {line}") for line in lines]


def test_the_changes_come_in_rounds_and_the_store_would_take_each():
    work = Workload(40)
    changes = [next(work) for _ in range(6 * 30)]
    assert [c.kind for c in changes[:6]] == list(ROUND)
    enabled, disabled = {f"p{i:05d}" for i in range(40)}, set()
    for change in changes:
        if change.kind is Kind.ADD:
            assert change.name not in enabled | disabled
            enabled.add(change.name)
        elif change.kind is Kind.ENABLE:
            disabled.remove(change.name)
            enabled.add(change.name)
        else:
            enabled.remove(change.name)  # set, disable and del pick an enabled policy
            if change.kind is Kind.DISABLE:
                disabled.add(change.name)
            elif change.kind is not Kind.DELETE:
                enabled.add(change.name)
    assert set(work.enabled) == enabled and set(work.disabled) == disabled
    # Every destination is a policy's own: no two policies ever overlap, whatever their priorities.
    dsts = [item["dst"] for item in initial(40)] + [c.fields["dst"] for c in changes if "dst" in c.fields]
    assert len(dsts) == len(set(dsts))
    a, b = (parse("r1", x["name"], {k: v for k, v in x.items() if k != "name"}) for x in initial(2))
    assert not overlaps(a, dataclasses.replace(b, priority=a.priority))


def test_a_masked_port_match_covers_its_block():
    assert covered("0x400/0xfc00") == set(range(1024, 2048))
    assert covered("80") == {80}


def test_the_flows_of_an_enabled_policy_must_match_its_fields():
    p = policy(dst="172.16.0.3/32", priority=107)
    assert mismatch(p, flows("priority=1107,ip,nw_dst=172.16.0.3 actions=drop")) is None
    assert "priority 1108" in mismatch(p, flows("priority=1108,ip,nw_dst=172.16.0.3 actions=drop"))
    assert "destination" in mismatch(p, flows("priority=1107,ip,nw_dst=172.16.0.4 actions=drop"))
    assert "actions" in mismatch(p, flows("priority=1107,ip,nw_dst=172.16.0.3 actions=goto_table:2"))
    assert mismatch(p, []) == "no flows on the switch"
    on_port = policy(dst="172.16.0.3/32", priority=107, in_port="1")
    assert "in_ports" in mismatch(on_port, flows("priority=1107,ip,nw_dst=172.16.0.3 actions=drop"))


def test_a_port_range_must_be_covered_exactly():
    p = policy(dst="172.16.0.3/32", priority=107, proto="tcp", dport="1024-65535")
    blocks = ["0x400/0xfc00", "0x800/0xf800", "0x1000/0xf000", "0x2000/0xe000", "0x4000/0xc000", "0x8000/0x8000"]
    lines = [f"priority=1107,tcp,nw_dst=172.16.0.3,tp_dst={b} actions=drop" for b in blocks]
    assert mismatch(p, flows(*lines)) is None
    assert "cover" in mismatch(p, flows(*lines[1:]))
    assert "cover" in mismatch(p, flows(*lines, lines[0]))  # a block twice


def test_a_disabled_or_deleted_policy_has_no_flows():
    p = policy(dst="172.16.0.3/32", enabled="no")
    assert mismatch(p, []) is None and mismatch(None, []) is None
    assert "left on the switch" in mismatch(p, flows("priority=1100,ip,nw_dst=172.16.0.3 actions=drop"))
