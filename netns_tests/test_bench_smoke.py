"""The route benchmark's harness runs end to end on a small load (a smoke test: no timing is asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_route_benchmark_harness_runs_and_reports_every_figure(tmp_path):
    out = tmp_path / "routes.json"
    env = dict(os.environ, BENCH_ROUTES="1000", BENCH_OUT=str(out), BENCH_TIMEOUT="120")
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "routes.py")], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads(out.read_text())
    assert results["routes"] == 1000
    for section in ("load", "restart", "withdraw", "ip_batch", "single_change"):
        assert section in results, f"{section} missing from {results}"
    assert results["load"]["routes"] == 1000
    # The one property the harness checks rather than times: a restart changes nothing.
    assert "0 added, 0 modified, 0 deleted, 0 group changes" in results["restart"]["log"]
    assert results["daemon_peak_rss_mb"] > 0
