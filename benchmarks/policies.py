#!/usr/bin/env python3
"""Policy changes on a router holding a full table, and what a /metrics scrape costs it.

Builds routes.py's lab (one bridge, two hosts, a daemon; the switch over TCP) with /metrics on, and
in one run:
- loads BENCH_ROUTES /24 routes (1,000,000 by default) with routes.py's producer, until every one
  is a flow;
- imports BENCH_POLICIES policies (10,000) with `taprouter policy import`, one process as an
  operator runs it, until the policy table holds all their flows (benchmarks/policy_workload.py
  says which policies);
- makes BENCH_POLICY_CHANGES changes (1,000; 200 with BENCH_QUICK=1) one after another, a mix of
  set (priority, match), disable, enable, del and add, each as the policy commands do it: the
  store's write (t0 when it returns), then POST /v1/policies/changed on the control socket with
  the policy's name and the store's generation before and after the write (policy/commands.py's
  notify), whose answer says `applied` once the switch answered the barrier after the change's
  flow_mods (t1).
  Every BENCH_CHECK_EVERY-th change (50) the policy table is read back with ovs-ofctl, outside the
  timing, and the change's policy checked against its own fields;
- scrapes /metrics BENCH_SCRAPES times (100; 30 quick) and divides the daemon's CPU time
  (/proc/PID/stat, user + system) by them, less what the idle daemon used in as long a time
  (measured before and after); the wall time of each scrape too;
- fetches each web UI page BENCH_PAGE_REQUESTS times (100; 20 quick) as a logged-in viewer
  (benchmarks/web_pages.py): the issue's budget is 300 ms a page with a full table.
The daemon log's passes during the changes (planning and sending) say where their time went.

Usage: .venv/bin/python benchmarks/policies.py  (writes benchmarks/policies.json, or BENCH_POLICIES_OUT)
"""

from __future__ import annotations

import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "netns_tests")]

import yaml  # noqa: E402

import ofctl  # noqa: E402
from benchmarks import steal, web_pages  # noqa: E402
from benchmarks.flowprobe import FlowProbe  # noqa: E402
from benchmarks.policy_workload import Change, Kind, Workload, initial, mismatch  # noqa: E402
from benchmarks.routes import TAPROUTER, TIMEOUT, RouteBench, cpu_seconds  # noqa: E402
from taprouter.controller.openflow.pipeline import Table, policy_cookie  # noqa: E402

OUT = Path(os.environ.get("BENCH_POLICIES_OUT", ROOT / "benchmarks" / "policies.json"))
QUICK = os.environ.get("BENCH_QUICK") == "1"
PASS_LINE = re.compile(r"reconciled .* in ([\d.]+) ms: .*\(planning ([\d.]+) ms, sending ([\d.]+) ms\)")


def log(text: str) -> None:
    print(f"[policies] {text}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentiles(values: list[float]) -> dict:
    """p50, p99 and max, in ms, of times in seconds."""
    ordered = sorted(values)
    at = lambda q: ordered[min(len(ordered) - 1, int(len(ordered) * q))]  # noqa: E731
    return {"p50_ms": round(at(0.5) * 1000, 2), "p99_ms": round(at(0.99) * 1000, 2),
            "max_ms": round(ordered[-1] * 1000, 2)}


def policy_flows(bridge: str, policy_id: int) -> list:
    out = ofctl.ofctl("dump-flows", bridge, "--no-stats", f"table={int(Table.POLICY)},"
                      f"cookie={policy_cookie(policy_id):#x}/-1")
    return ofctl.parse_flows(out)


def wait_policy_flows(bridge: str, want: int) -> float:
    """Until the policy table holds `want` flows; when, on the monotonic clock."""
    start = time.monotonic()
    with FlowProbe(bridge) as probe:
        while (have := probe.table_count(Table.POLICY)) != want:
            if time.monotonic() - start > TIMEOUT:
                raise TimeoutError(f"policy table: {have} flows, not {want}, after {TIMEOUT:.0f} s")
            time.sleep(0.01)
    return time.monotonic()


class PolicyBench:
    """The stages on one RouteBench that is up, its routes loaded."""

    def __init__(self, bench: RouteBench, count: int):
        from taprouter import config
        from taprouter.control.client import ControlClient
        from taprouter.policy.store import Store

        self.bench, self.count = bench, count
        os.environ["TAPROUTER_RUN_DIR"] = bench.env["TAPROUTER_RUN_DIR"]  # where config.load puts the socket
        loaded = config.load(bench.config)
        self.store = Store.open(loaded, user="bench")
        self.client = ControlClient(loaded.control.socket)
        self.policies: dict = {}  # name -> Policy, as the store last returned it
        self.base = 0  # the policy table's own flows (pipeline guards and miss)

    def import_all(self, results: dict) -> None:
        bridge, router = self.bench.lab.bridge, self.bench.router
        path = self.bench.tmp / "policies.yaml"
        path.write_text(yaml.safe_dump({"policies": {router: initial(self.count)}}, sort_keys=False))
        with FlowProbe(bridge) as probe:
            self.base = probe.table_count(Table.POLICY)
        t0 = time.monotonic()
        proc = subprocess.run([TAPROUTER, "policy", "import", "-c", str(self.bench.config), str(path)],
                              env=self.bench.env, capture_output=True, text=True, timeout=TIMEOUT)
        returned = time.monotonic()
        if proc.returncode != 0:
            raise RuntimeError(f"policy import failed: {proc.stderr.strip()}")
        self.policies = {p.name: p for p in self.store.policies(router)}
        flows = sum(len(policy_flows_wanted(p)) for p in self.policies.values())
        done = wait_policy_flows(bridge, self.base + flows)
        results["import"] = {"policies": len(self.policies), "flows": flows, "command_s": round(returned - t0, 3),
                             "on_switch_s": round(done - t0, 3),
                             "confirmed": "not confirmed" not in proc.stderr, "note": proc.stderr.strip()[-300:]}
        log(f"import: {len(self.policies)} policies ({flows} flows) stored and notified in {returned - t0:.2f} s, "
            f"on the switch after {done - t0:.2f} s")

    def apply(self, change: Change):
        """The store's write, as the policy command makes it."""
        router, store = self.bench.router, self.store
        if change.kind is Kind.ADD:
            from taprouter.policy.model import parse

            return store.add(parse(router, change.name, dict(change.fields)))
        if change.kind in (Kind.SET_PRIORITY, Kind.SET_MATCH):
            outcome = store.update(router, change.name, change.fields)
        elif change.kind is Kind.DISABLE:
            outcome = store.disable(router, change.name)
        elif change.kind is Kind.ENABLE:
            outcome = store.enable(router, change.name)
        else:
            store.delete(router, change.name)
            return None
        if not outcome.changed:
            raise AssertionError(f"{change}: the store changed nothing")
        return outcome.policy

    def changes(self, results: dict, count: int, every: int) -> None:
        bridge, router = self.bench.lab.bridge, self.bench.router
        workload = Workload(self.count)
        latencies, writes, late, checked, wrong, when, kinds_of = [], [], [], 0, [], [], []
        offset = self.bench.log.stat().st_size
        kinds: dict[str, int] = {}
        with steal.Meter() as meter:
            for i, change in zip(range(count), workload):
                started = time.perf_counter()
                policy = self.apply(change)
                t0 = time.perf_counter()
                answer = self.client.post("/v1/policies/changed", {"router": router, "names": [change.name],
                                                                   "generations": list(self.store.last_write)})
                t1 = time.perf_counter()
                writes.append(t0 - started)
                latencies.append(t1 - t0)
                when.append(time.time())
                kinds[change.kind.value] = kinds.get(change.kind.value, 0) + 1
                kinds_of.append(change.kind.value)
                old = self.policies.pop(change.name, None)
                if policy is not None:
                    self.policies[change.name] = policy
                if not answer.get("applied"):
                    late.append({"change": i, "kind": change.kind.value, "answer": answer})
                if (i + 1) % every == 0:  # outside the timing: the switch against the policy's fields
                    checked += 1
                    pid = (policy or old).id
                    why = mismatch(policy, policy_flows(bridge, pid))
                    if why is not None:
                        wrong.append({"change": i, "kind": change.kind.value, "name": change.name, "why": why})
                        log(f"change {i} ({change.kind.value} {change.name}): {why}")
        stolen = meter.steal.figures()
        passes = [tuple(map(float, m.groups())) for m in PASS_LINE.finditer(self.bench.log.read_text()[offset:])]
        figures = {"changes": count, "kinds": kinds, **percentiles(latencies),
                   "store_write": percentiles(writes), "not_applied": len(late), "late": late[:10],
                   "checked": checked, "mismatches": len(wrong), "wrong": wrong[:10], **stolen,
                   # The slowest, with when they returned (wall clock), to find them in the daemon's log.
                   "slowest": [{"change": i, "kind": kinds_of[i], "ms": round(latencies[i] * 1000, 2),
                                "at": time.strftime("%H:%M:%S", time.localtime(when[i])) + f"{when[i] % 1:.3f}"[1:]}
                               for i in sorted(range(len(latencies)), key=latencies.__getitem__)[-10:][::-1]],
                   "passes": {"logged": len(passes),
                              **{f"{what}_ms": _spread([p[k] for p in passes]) for k, what in
                                 enumerate(("pass", "planning", "sending"))}}}
        results["changes"] = figures
        log(f"{count} changes, store write to switch: p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms, "
            f"max {figures['max_ms']} ms; the writes: p50 {figures['store_write']['p50_ms']} ms; "
            f"{len(late)} not confirmed; {checked} checked against the switch, {len(wrong)} wrong; "
            f"passes {figures['passes']}; host steal {stolen['steal_pct']:.1f}%")

    def scrape(self, results: dict, count: int, idle_s: float) -> None:
        """The daemon's CPU per scrape, less its idle CPU over as long a time, and each scrape's wall time."""
        pid, url = self.bench.daemon.pid, f"http://{self.bench.metrics_listen}/metrics"
        body = _get(url)  # the first scrape builds the policy lines' templates
        series = sum(1 for line in body.splitlines() if line.startswith(b"taprouter_policy_installed{"))
        idle_before = _idle_rate(pid, idle_s)
        walls = []
        with steal.Meter() as meter:
            cpu0, start = cpu_seconds(pid), time.perf_counter()
            for _ in range(count):
                t = time.perf_counter()
                _get(url)
                walls.append(time.perf_counter() - t)
            elapsed, cpu = time.perf_counter() - start, cpu_seconds(pid) - cpu0
        idle = (idle_before + _idle_rate(pid, idle_s)) / 2
        figures = {"scrapes": count, "bytes": len(body), "policy_series": series, "policies": len(self.policies),
                   "daemon_cpu_ms": round(cpu / count * 1000, 2),
                   "daemon_idle_cpu_ms_per_s": round(idle * 1000, 2),
                   "daemon_cpu_net_ms": round(max(0.0, cpu - idle * elapsed) / count * 1000, 2),
                   "wall_ms": round(statistics.median(walls) * 1000, 2),
                   "wall_p99_ms": percentiles(walls)["p99_ms"], **meter.steal.figures()}
        results["scrape"] = figures
        log(f"/metrics: {count} scrapes of {len(body):,} bytes ({series} policies): daemon CPU "
            f"{figures['daemon_cpu_ms']} ms a scrape, {figures['daemon_cpu_net_ms']} ms less its idle "
            f"{figures['daemon_idle_cpu_ms_per_s']} ms/s; wall median {figures['wall_ms']} ms, "
            f"p99 {figures['wall_p99_ms']} ms")


def policy_flows_wanted(policy) -> list:
    """The flows the planner makes of a policy: the import's count to wait for (a disabled one has none)."""
    from taprouter.controller.planner.policies import matches

    return matches(policy) if policy.enabled else []


def _spread(values: list[float]) -> dict | None:
    if not values:
        return None
    ordered = sorted(values)
    return {"median": round(statistics.median(ordered), 1), "p99": ordered[min(len(ordered) - 1,
                                                                                 int(len(ordered) * 0.99))],
            "max": ordered[-1]}


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as answer:
        return answer.read()


def _idle_rate(pid: int, seconds: float) -> float:
    """CPU seconds a second the daemon uses on its own (counter polls, status), over `seconds`."""
    cpu0, start = cpu_seconds(pid), time.perf_counter()
    time.sleep(seconds)
    return (cpu_seconds(pid) - cpu0) / (time.perf_counter() - start)


def main() -> int:
    routes = int(os.environ.get("BENCH_ROUTES", "1000000"))
    count = int(os.environ.get("BENCH_POLICIES", "10000"))
    changes = int(os.environ.get("BENCH_POLICY_CHANGES", "200" if QUICK else "1000"))
    scrapes = int(os.environ.get("BENCH_SCRAPES", "30" if QUICK else "100"))
    every = int(os.environ.get("BENCH_CHECK_EVERY", "50"))
    idle_s = float(os.environ.get("BENCH_IDLE_S", "2" if QUICK else "5"))
    page_requests = int(os.environ.get("BENCH_PAGE_REQUESTS", "20" if QUICK else "100"))
    bench = RouteBench(routes, tls=False)
    bench.metrics_listen = f"127.0.0.1:{free_port()}"
    results: dict = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "routes": routes, "policies": count,
                     "transport": "tcp"}
    try:
        bench.up()
        loaded: dict = {}
        bench.load(loaded)
        results["load"] = loaded["load"]
        stages = PolicyBench(bench, count)
        stages.import_all(results)
        stages.changes(results, changes, every)
        stages.scrape(results, scrapes, idle_s)
        log(f"web UI pages: {page_requests} requests each, as a viewer")
        results["web_pages"] = web_pages.measure(TAPROUTER, bench.config, bench.env, bench.router, "10.1.2.3",
                                                 page_requests, bench.tmp / "web.log")
        log(f"  the daemon's /v1/status over its socket, first and second: {results['web_pages']['status_first_second_ms']} ms")
        for name, figures in results["web_pages"]["pages"].items():
            log(f"  {name}: p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms, max {figures['max_ms']} ms, "
                f"first {figures['first_ms']} ms ({figures['bytes']:,} bytes)")
    finally:
        bench.down()
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    log(f"wrote {OUT}")
    bad = results["changes"]["mismatches"] + results["changes"]["not_applied"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
