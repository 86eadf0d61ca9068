"""The route and policy benchmarks' harnesses run end to end on a small load (smoke tests: no timing is
asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks import routes, web_pages  # noqa: E402


def test_route_benchmark_harness_runs_and_reports_every_figure(tmp_path):
    out = tmp_path / "routes.json"
    # A steal limit of 0 counts every stage as disturbed: the timed stages run BENCH_ATTEMPTS times.
    env = dict(os.environ, BENCH_ROUTES="1000", BENCH_CHANGES="20", BENCH_OUT=str(out), BENCH_TIMEOUT="120",
               BENCH_STEAL_LIMIT="0", BENCH_ATTEMPTS="2")
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "routes.py")], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads(out.read_text())
    assert results["routes"] == 1000
    for section in ("load", "restart", "withdraw", "ip_batch", "single_change"):
        assert section in results, f"{section} missing from {results}"
    assert results["load"]["routes"] == 1000
    assert len(results["attempts"]) == 2 and "again" in proc.stdout
    for stage in ("load", "restart", "single_change", "withdraw"):
        assert results[stage]["attempt"] in (1, 2) and results[stage]["steal_pct"] >= 0
        assert all(stage in attempt for attempt in results["attempts"])
    # What the harness checks rather than times: a restart changes nothing, and the switch matches
    # the kernel route for route after each stage.
    assert "0 added, 0 modified, 0 deleted, 0 group changes" in results["restart"]["log"]
    for stage in ("load", "restart", "withdrawal"):
        check = results["verify"][stage]
        assert check["missing"] == check["stale"] == 0 and check["switch_flows"] >= 2, check
    assert results["verify"]["load"]["switch_flows"] >= 1000
    assert results["single_change"]["changes"] == 20
    assert results["daemon_peak_rss_mb"] > 0
    # Both families at once: 22% as many IPv6 routes, each table checked against the kernel.
    full = results["full_table"]
    assert (full["ipv4_routes"], full["ipv6_routes"]) == (1000, 220)
    assert full["load"]["routes"] == full["withdraw"]["routes"] == 1220
    assert full["verify"]["full table"]["switch_flows"] >= 1220 and full["daemon_peak_rss_mb"] > 0
    for stage in ("full table", "full table withdrawal"):
        assert full["verify"][stage]["missing"] == full["verify"][stage]["stale"] == 0, full["verify"]
    # The switch was over TLS; the comparison over TCP loaded and withdrew the same routes.
    assert results["transport"] == "tls"
    assert results["tcp"]["verify"]["load"]["missing"] == results["tcp"]["verify"]["load"]["stale"] == 0
    assert results["tcp"]["load"]["routes"] == results["tcp"]["withdraw"]["routes"] == 1000


def test_vlan_table_benchmark_harness_runs_and_checks_both_labs(tmp_path):
    out = tmp_path / "vlan_table.json"
    env = dict(os.environ, BENCH_ROUTES="1000", BENCH_VLAN_OUT=str(out), BENCH_TIMEOUT="120", BENCH_VLAN_ROUNDS="2")
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "vlan_table.py")], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads(out.read_text())
    assert (results["ipv4_routes"], results["ipv6_routes"]) == (1000, 220)
    assert len(results["rounds"]) == 2
    for kind in ("untagged", "vlan"):
        for stage in ("load", "withdrawal"):
            assert results["verify"][kind][stage] == {"missing": 0, "stale": 0}, results["verify"]
    # The VLAN lab's next hop group tags its frames; the untagged lab's does not.
    tag = f"{0x1000 | results['vlan']}->vlan_vid"
    assert tag in results["next_hop_groups"]["vlan"], results["next_hop_groups"]
    assert "vlan_vid" not in results["next_hop_groups"]["untagged"], results["next_hop_groups"]
    assert results["load"]["ratio_vlan_over_untagged"] > 0
    assert set(results["load"]["over_kernel"]) == set(results["load"]["daemon_cpu_us_per_route"]) == {"untagged", "vlan"}


def test_policy_benchmark_harness_runs_and_checks_the_switch(tmp_path):
    # A small form of the policy stage: few routes, 100 policies, 50 changes (every fifth checked
    # against the switch), 10 scrapes. Its timings are not asserted; what it checks is.
    out = tmp_path / "policies.json"
    env = dict(os.environ, BENCH_ROUTES="1000", BENCH_POLICIES="100", BENCH_POLICY_CHANGES="50", BENCH_SCRAPES="10",
               BENCH_CHECK_EVERY="5", BENCH_IDLE_S="0.5", BENCH_POLICIES_OUT=str(out), BENCH_TIMEOUT="120",
               BENCH_PAGE_REQUESTS="3")
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "policies.py")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads(out.read_text())
    assert results["routes"] == 1000 and results["load"]["routes"] == 1000
    assert results["import"]["policies"] == 100 and results["import"]["confirmed"]
    assert results["import"]["flows"] >= 100
    changes = results["changes"]
    assert changes["changes"] == 50 and set(changes["kinds"]) == {"set priority", "set match", "disable", "enable",
                                                                  "del", "add"}
    assert changes["not_applied"] == 0 and changes["checked"] == 10 and changes["mismatches"] == 0, changes
    assert 0 < changes["p50_ms"] <= changes["p99_ms"] <= changes["max_ms"]
    assert changes["passes"]["logged"] >= 50  # each change was a pass of its own in the daemon's log
    scrape = results["scrape"]
    assert scrape["scrapes"] == 10 and scrape["policy_series"] == scrape["policies"] == 100
    assert scrape["daemon_cpu_ms"] >= 0 and scrape["wall_ms"] > 0
    pages = results["web_pages"]["pages"]
    assert set(pages) == {name for name, _ in web_pages.pages("r", "10.0.0.1")}
    assert all(p["requests"] == 3 and p["bytes"] > 0 and p["p50_ms"] > 0 for p in pages.values())


def test_a_harness_whose_daemon_cannot_start_leaves_no_lab_behind(monkeypatch):
    # As when a checkout without .venv was benchmarked: `taprouter down` could not run either,
    # and the bridge and namespaces stayed.
    monkeypatch.setattr(routes, "TAPROUTER", str(REPO / "no-such-taprouter"))
    bench = routes.RouteBench(10, tls=False)
    try:
        with pytest.raises(OSError):
            bench.up()
    finally:
        bench.down()
    bridges = subprocess.run(["ovs-vsctl", "list-br"], capture_output=True, text=True, check=True).stdout.split()
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert bench.lab.bridge not in bridges
    assert bench.prefix not in namespaces
    assert not bench.tmp.exists()


def test_bgp_full_table_benchmark_harness_runs_and_reports_every_stage(tmp_path):
    # The BGP stage at 1,000 + 220 prefixes: a real peer BIRD, the router's BIRD, kernel and switch.
    out = tmp_path / "bgp_full.json"
    env = dict(os.environ, BENCH_ROUTES="1000", BENCH_BGP_OUT=str(out), BENCH_TIMEOUT="120")
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bgp_full.py")], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads(out.read_text())
    assert (results["ipv4_routes"], results["ipv6_routes"]) == (1000, 220)
    for stage in ("announce", "withdraw", "reannounce"):
        figures = results[stage]
        # 1,220 prefixes can be in the kernel before the poll sees the session up: times near 0 are
        # real here, and only a full table's figures mean anything (make bench).
        assert 0 <= figures["kernel_s"] <= figures["switch_s"] + 1 and 0 <= figures["switch_s"], figures
        assert figures["ratio"] is None or figures["ratio"] > 0, figures
    kill = results["kill"]
    # The table never left the kernel nor the switch while BIRD was dead, and h3 counted every ping.
    assert kill["kernel_low"] == kill["kernel_full"] and kill["switch_low"] == kill["switch_full"], kill
    assert kill["pings_sent"] > 0 and kill["lost"] == 0, kill
    assert kill["restarted_s"] <= kill["relearnt_s"] and kill["whole_s"] > 0
    assert results["kernel_overflows"] == 0
    for stage in ("announce", "withdraw", "kill"):
        check = results["verify"][stage]
        assert check["missing"] == check["stale"] == 0, (stage, check)
    assert results["verify"]["announce"]["switch_flows"] >= 1220 and results["verify"]["withdraw"]["switch_flows"] < 20
