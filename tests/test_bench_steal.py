"""make bench's accounting of host steal, and its choice among attempts (benchmarks/steal.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import routes, steal  # noqa: E402

STAT = """cpu  2731930 0 1063388 8886670 10628 0 63766 335734 0 0
cpu0 1365965 0 531694 4443335 5314 0 31883 167867 0 0
cpu1 1365965 0 531694 4443335 5314 0 31883 167867 0 0
intr 1 2 3
"""


def test_steal_is_the_eighth_value_of_the_aggregate_cpu_line():
    assert steal.parse_steal(STAT) == pytest.approx(335734 / steal.CLK_TCK)
    assert steal.parse_steal("cpu  1 2 3 4 5 6 7\n") == 0.0  # a kernel too old to count it
    with pytest.raises(ValueError):
        steal.parse_steal("cpu0 1 2 3 4 5 6 7 8\n")


def test_a_meter_takes_the_steal_as_a_share_of_the_machine_over_the_stage(monkeypatch):
    clock, stolen = iter([100.0, 104.0]), iter([50.0, 50.4])
    monkeypatch.setattr(steal.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(steal, "stolen_s", lambda: next(stolen))
    with steal.Meter(cpus=2) as meter:
        pass
    assert meter.steal.stolen_s == pytest.approx(0.4)
    assert meter.steal.share == pytest.approx(0.4 / 8)  # 4 s on 2 CPUs
    assert meter.steal.figures() == {"steal_s": 0.4, "steal_pct": 5.0}


def test_this_machines_proc_stat_parses():
    first = steal.stolen_s()  # raises if the aggregate line is missing
    assert steal.stolen_s() >= first >= 0


def test_disturbed_names_the_stages_at_or_over_the_limit():
    attempt = {"load": {"steal_pct": 3.0}, "restart": {"steal_pct": 0.2}, "withdraw": {"steal_pct": 1.0}}
    assert steal.disturbed(attempt, ("load", "restart", "withdraw", "single_change"), limit=0.01) == \
        ["load", "withdraw"]
    assert steal.disturbed(attempt, ("restart",), limit=0.01) == []


def test_the_least_disturbed_attempt_is_chosen_even_when_another_was_faster():
    attempts = [{"load": {"on_switch_s": 8.0, "steal_pct": 4.0}},
                {"load": {"on_switch_s": 11.0, "steal_pct": 0.1}},
                {"load": {"on_switch_s": 9.0, "steal_pct": 0.1}}]
    index, figures = steal.least_disturbed(attempts, "load")
    assert (index, figures["on_switch_s"]) == (1, 11.0)  # slower, but undisturbed; the earlier of a tie
    with pytest.raises(KeyError):
        steal.least_disturbed(attempts, "withdraw")


def _attempt(load_s, load_steal, withdraw_steal, missing=0):
    check = {"kernel_routes": 10, "switch_flows": 10, "missing": missing, "stale": 0, "to_kernel": 0}
    return {"load": {"on_switch_s": load_s, "steal_pct": load_steal},
            "restart": {"reconciled_s": 1.0, "steal_pct": 0.0},
            "single_change": {"p99_ms": 3.0, "steal_pct": 0.0},
            "withdraw": {"off_switch_s": 2.0 + load_s, "steal_pct": withdraw_steal},
            "verify": {stage: dict(check) for stage in ("load", "restart", "withdrawal")}}


def test_headline_takes_each_stage_from_its_own_quietest_attempt_and_sums_the_checks():
    attempts = [_attempt(9.0, 5.0, 0.0), _attempt(12.0, 0.0, 2.0, missing=1)]
    out = routes.headline(attempts)
    assert out["load"] == {"on_switch_s": 12.0, "steal_pct": 0.0, "attempt": 2}
    assert out["withdraw"]["off_switch_s"] == 11.0 and out["withdraw"]["attempt"] == 1
    assert out["restart"]["attempt"] == out["single_change"]["attempt"] == 1
    assert out["verify"]["load"]["missing"] == 1  # a mismatch in any attempt shows
    assert out["attempts"] is attempts
