#!/usr/bin/env python3
"""Many datapaths on one daemon: its memory and CPU per datapath, at idle and with routes.

Builds netns_tests/manylab.py's lab (BENCH_DATAPATHS bridges, default 10, each its own router
with two hosts; no BIRD, so the figures are taprouter's alone) and measures, for the daemon
process (all its threads) and separately for its TAP holders:
- one router: a daemon whose config names only the first bridge, idle for BENCH_IDLE seconds
  (default 30): resident memory and CPU;
- all of them: the same with every bridge; per datapath = (all - one) / (N - 1);
- BENCH_ROUTES (default 100,000) /24 routes on each of two routers, injected at once with
  benchmarks/inject.py, until both switches hold them all as flows: the time, the daemon's CPU
  for it, its resident memory after, then its idle CPU with the routes in place.

Usage: .venv/bin/python benchmarks/datapaths.py   (writes benchmarks/datapaths.json; not in make test)
Timings are noisy on shared machines; compare figures from one run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "netns_tests"))

import yaml  # noqa: E402

from benchmarks.inject import arrival, build, send  # noqa: E402
from benchmarks.routes import cpu_seconds, flow_count, peak_rss_mb  # noqa: E402
from manylab import ManyLab  # noqa: E402
from taprouter import netns  # noqa: E402

DATAPATHS = int(os.environ.get("BENCH_DATAPATHS", "10"))
IDLE = float(os.environ.get("BENCH_IDLE", "30"))
ROUTES = int(os.environ.get("BENCH_ROUTES", "100000"))
OUT = Path(os.environ.get("BENCH_OUT", ROOT / "benchmarks" / "datapaths.json"))


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def holder_pids(lab: ManyLab, routers: int) -> list[int]:
    pids = []
    for i in range(routers):
        try:
            pids.append(int((lab.router_dir(i) / "holder.pid").read_text().split()[0]))
        except (OSError, ValueError, IndexError):
            pass
    return pids


def pss_mb(pid: int) -> float:
    """Proportional set size: resident memory with pages shared between processes (the holders'
    Python interpreter and libraries) split among them, so that it adds up across processes."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    return 0.0


def sample(lab: ManyLab, routers: int, seconds: float) -> dict:
    """The daemon's and its holders' resident memory now, and their CPU over `seconds` of idle."""
    pid, holders = lab.proc.pid, holder_pids(lab, routers)
    cpu0, hcpu0 = cpu_seconds(pid), sum(cpu_seconds(h) for h in holders)
    time.sleep(seconds)
    cpu1, hcpu1 = cpu_seconds(pid), sum(cpu_seconds(h) for h in holders)
    return {"daemon_rss_mb": round(peak_rss_mb(pid, "VmRSS"), 1),
            "daemon_peak_rss_mb": round(peak_rss_mb(pid), 1),
            "daemon_cpu_pct": round(100 * (cpu1 - cpu0) / seconds, 2),
            "holders": len(holders),
            "holders_rss_mb": round(sum(peak_rss_mb(h, "VmRSS") for h in holders), 1),
            "holders_pss_mb": round(sum(pss_mb(h) for h in holders), 1),
            "holders_cpu_pct": round(100 * (hcpu1 - hcpu0) / seconds, 2)}


def one_router_config(lab: ManyLab) -> Path:
    config = yaml.safe_load(lab.config_path.read_text())
    first = lab.routers[0]
    config["routers"] = {first: config["routers"][first]}
    path = lab.tmp_path / "one-router.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def load_two(lab: ManyLab) -> dict:
    """ROUTES routes into each of routers 0 and 1 at once, until both switches hold them."""
    targets = (0, 1)
    base = {i: flow_count(lab.labs[i].bridge) for i in targets}
    batches = {}
    for i in targets:
        with netns.iproute(lab.routers[i]) as ipr:
            index = ipr.link_lookup(ifname=f"{lab.labs[i].prefix}p2")[0]
        batches[i] = build(index, lab.h2_address(i), arrival(ROUTES, "20.0.0.0", i))
    pid = lab.proc.pid
    cpu0, start = cpu_seconds(pid), time.monotonic()
    for i in targets:
        send(lab.routers[i], batches[i])
    done = {}
    while len(done) < len(targets):
        for i in targets:
            if i not in done and flow_count(lab.labs[i].bridge) >= base[i] + ROUTES:
                done[i] = time.monotonic() - start
        if time.monotonic() - start > 600:
            raise TimeoutError(f"routes not on the switches after 600 s: {done}")
        time.sleep(0.05)
    return {"routes_each": ROUTES, "routers": len(targets),
            "on_switches_s": round(max(done.values()), 2),
            "daemon_cpu_s": round(cpu_seconds(pid) - cpu0, 2)}


def main() -> int:
    subprocess.run(["bash", str(ROOT / "scripts" / "ovs-start.sh")], check=True, capture_output=True)
    tmp = Path(tempfile.mkdtemp(prefix="bench-datapaths-"))
    lab = ManyLab(tmp, DATAPATHS, bird=False)
    results: dict = {"datapaths": DATAPATHS, "idle_s": IDLE}
    try:
        lab.build()
        log(f"lab of {DATAPATHS} bridges built ({lab.prefix})")

        full = lab.config_path
        lab.config_path = one_router_config(lab)
        lab.routers, all_routers = lab.routers[:1], lab.routers
        took = lab.start()
        log(f"one router: ready in {took:.1f} s; idle {IDLE:g} s")
        results["one"] = sample(lab, 1, IDLE)
        log(f"one router: {results['one']}")
        assert lab.stop() == 0
        lab.taprouter("down", "-c", str(lab.config_path), timeout=120)
        lab.config_path, lab.routers = full, all_routers

        took = lab.start()
        results["ready_s"] = round(took, 1)
        for i in range(DATAPATHS):
            assert lab.ping_once(i).returncode == 0, f"router {i} does not route"
        log(f"{DATAPATHS} routers: ready in {took:.1f} s, all routing; idle {IDLE:g} s")
        results["all"] = sample(lab, DATAPATHS, IDLE)
        log(f"{DATAPATHS} routers: {results['all']}")
        one, every = results["one"], results["all"]
        results["per_datapath"] = {
            key: round((every[key] - one[key]) / (DATAPATHS - 1), 2)
            for key in ("daemon_rss_mb", "daemon_cpu_pct", "holders_rss_mb", "holders_pss_mb", "holders_cpu_pct")}
        log(f"per datapath: {results['per_datapath']}")

        results["load"] = load_two(lab)
        log(f"load: {results['load']}")
        for i in range(DATAPATHS):
            assert lab.ping_once(i).returncode == 0, f"router {i} does not route with the routes loaded"
        results["with_routes"] = sample(lab, DATAPATHS, IDLE)
        log(f"{DATAPATHS} routers, {ROUTES} routes on each of two: {results['with_routes']}")
    finally:
        problems = lab.teardown()
        if problems:
            log("teardown problems: " + "; ".join(problems) + f"; the daemon's log is in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    log(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
