"""make bench's table (benchmarks/run.py): figures against targets, ratios to the kernel's own time."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import run  # noqa: E402

ROUTES = {"routes": 1_000_000,
          "load": {"on_switch_s": 9.0, "producer_s": 4.5, "routes_per_s": 111_111, "steal_pct": 0.1,
                   "daemon_cpu_us_per_route": 4.5},
          "withdraw": {"off_switch_s": 12.0, "producer_s": 4.0, "steal_pct": 2.5, "daemon_cpu_us_per_route": 5.5},
          "attempts": [{}, {}, {}]}


def _rows(results):
    """By figure, the first of a name (the TCP comparison repeats some, indented)."""
    rows: dict = {}
    for row in run.summary(results):
        rows.setdefault(row["figure"].strip(), row)
    return rows


def test_each_figure_is_judged_against_its_target():
    rows = _rows({"routes": ROUTES, "dataplane": {}})
    assert rows["full load on the switch, s"]["met"] is True
    assert rows["withdrawal off the switch, s"]["met"] is False
    assert rows["sustained rate, routes/s"]["met"] is True
    assert rows["the same, withdrawing"]["met"] is False  # 5.5 us of daemon CPU against 5
    assert rows["punt RTT p50 / L2 RTT p50"]["value"] is None  # the stage did not run: no verdict
    assert rows["punt RTT p50 / L2 RTT p50"]["met"] is None


def test_times_are_also_given_against_the_kernels_own_time_and_the_steal_beside_them():
    figures = [row for row in run.summary({"routes": ROUTES}) if "kernel's own time" in row["figure"]]
    assert [row["value"] for row in figures] == [2.0, 3.0]  # load, then withdrawal
    rows = _rows({"routes": ROUTES})
    assert rows["host CPU stolen: load / withdrawal, %"]["value"] == "0.1 / 2.5"
    assert rows["timed attempts (again when the host stole CPU)"]["value"] == 3


def test_the_table_prints_numbers_text_and_gaps(capsys):
    run.print_table(run.summary({"routes": ROUTES}))
    out = capsys.readouterr().out
    assert "0.1 / 2.5" in out and "111,111" in out and " NO" in out


def test_the_full_table_of_both_families_is_judged_on_memory_and_on_matching_the_kernel():
    verify = {"full table": {"missing": 0, "stale": 0}, "full table withdrawal": {"missing": 0, "stale": 2}}
    full = {"ipv4_routes": 1_000_000, "ipv6_routes": 220_000, "daemon_peak_rss_mb": 700.0, "ovs_rss_mb": 1100.0,
            "load": {"on_switch_s": 12.5}, "withdraw": {"off_switch_s": 14.0}, "verify": verify}
    rows = _rows({"routes": {**ROUTES, "full_table": full}})
    assert rows["full table, IPv4 + IPv6 routes"]["value"] == 1_220_000
    assert rows["on the switch, s"]["value"] == 12.5 and rows["on the switch, s"]["met"] is None
    assert rows["daemon peak RSS so far, MB"]["met"] is True
    assert rows["switch vs kernel, both families: missing + stale"]["value"] == 2
    assert rows["switch vs kernel, both families: missing + stale"]["met"] is False
    absent = _rows({"routes": ROUTES})  # the stage did not run: no figures, no verdicts
    assert absent["full table, IPv4 + IPv6 routes"]["value"] is None
    assert absent["switch vs kernel, both families: missing + stale"]["met"] is None


def test_policy_changes_and_the_scrape_are_judged_against_their_targets():
    policies = {"routes": 1_000_000, "import": {"policies": 10_000, "on_switch_s": 3.1},
                "changes": {"p50_ms": 12.0, "p99_ms": 51.0, "max_ms": 90.0, "not_applied": 0, "mismatches": 0},
                "scrape": {"daemon_cpu_ms": 2.2, "wall_ms": 3.9}}
    rows = _rows({"policies": policies})
    assert rows["p99, ms"]["met"] is False  # 51 ms against 50
    assert rows["policy change, store write to switch, p50, ms"]["met"] is None  # no target
    assert rows["/metrics scrape: daemon CPU, ms"]["met"] is True
    assert rows["not applied, or not so on the switch (sampled)"]["met"] is True
    assert rows["policies, on a router holding routes"]["value"] == "10,000 / 1,000,000"
    assert _rows({})["p99, ms"]["met"] is None  # the stage did not run: no verdict


def test_the_bgp_full_table_is_judged_against_the_kernels_own_time():
    bgp = {"ipv4_routes": 1_000_000, "ipv6_routes": 220_000,
           "announce": {"kernel_s": 30.0, "switch_s": 33.0, "ratio": 1.1},
           "withdraw": {"kernel_s": 20.0, "switch_s": 26.0, "ratio": 1.3},
           "kill": {"lost": 0, "relearnt_s": 40.0, "kernel_full": 1_220_006, "kernel_low": 1_220_006,
                    "switch_full": 1_220_012, "switch_low": 1_220_000}}
    rows = _rows({"bgp_full": bgp})
    assert rows["BGP full table, IPv4 + IPv6 prefixes from a peer"]["value"] == 1_220_000
    assert rows["on the switch, as a multiple of that"]["met"] is True
    assert rows["off the switch, as a multiple of that"]["met"] is False  # 1.3 against 1.2
    assert rows["BIRD kill -9: pings lost of 1000 pps"]["met"] is True
    assert rows["BIRD kill -9: kernel / switch lowest count, routes lost"]["value"] == "0 / 12"
    assert _rows({})["on the switch, as a multiple of that"]["met"] is None  # the stage did not run
