#!/usr/bin/env python3
"""Route-programming benchmark: kernel FIB to switch flows, with a fast producer and with `ip -batch`.

Builds its own lab (one bridge, two hosts, a taprouter daemon), then measures in one run:
- load: BENCH_ROUTES /24 routes via one next hop, injected with benchmarks/inject.py (raw
  netlink, batched, no ACKs), until all are flows in the IPv4 FIB table; and the withdrawal;
- the same load produced by `ip -batch`, against `ip`'s own time;
- restart: a daemon started against a kernel and switch already holding the routes, until
  it has read both back and reconciled (which must change nothing);
- single changes: one route added at a time on an idle router holding the full table, until its
  flow is on the switch;
- cost: the daemon's CPU time per route and its peak resident memory, and Open vSwitch's.
- both families at once: the IPv4 table and 22% as many IPv6 /48s, the global table's mix, loaded,
  checked and withdrawn together (benchmarks/fulltable.py), after the timed stages;
- host steal: the CPU the hypervisor took during each timed stage (benchmarks/steal.py). Load,
  restart, single changes and withdrawal run again, up to BENCH_ATTEMPTS (3) in all, while one of
  them saw BENCH_STEAL_LIMIT (1%) or more stolen; each is reported from its least disturbed attempt.

Usage: BENCH_ROUTES=100000 .venv/bin/python benchmarks/routes.py  (writes benchmarks/routes.json; default
a full table, 1,000,000 routes; BENCH_CHANGES single changes, default 1000)
Timings are noisy on shared machines; compare ratios from one run.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from benchmarks import fulltable, steal  # noqa: E402
from benchmarks.flowprobe import FlowProbe  # noqa: E402
from benchmarks.inject import ORDER, arrival, build, inject, prefixes, send  # noqa: E402
from taprouter import netns  # noqa: E402
from taprouter.controller.openflow.pipeline import Owner, Table, cookie  # noqa: E402
from taprouter import prefix  # noqa: E402
from taprouter.routing.netlink import dump_routes  # noqa: E402
from taprouter.lab import Lab, make_pki, sh  # noqa: E402

TAPROUTER = str(ROOT / ".venv" / "bin" / "taprouter")
OUT = Path(os.environ.get("BENCH_OUT", ROOT / "benchmarks" / "routes.json"))
TIMEOUT = float(os.environ.get("BENCH_TIMEOUT", "600"))
IP_BATCH_LINES = 100_000
ROUTE_COOKIE = cookie(Owner.ROUTE)
# Between single changes. The daemon takes a change within 10 ms of its last pass for part of a
# stream and gathers 2 ms more before the next pass (core.BURST_GAP, BURST_GATHER); 2 ms apart,
# as this was until 2026-11-26, timed changes in a stream (p50 4.5 ms, p99 11.5 to 17.6 ms).
IDLE_GAP = 0.02
PROBE_PAUSE = 0.0005  # between a single change's questions to the switch (single_changes)
FLOW_LINE = re.compile(r"priority=\d+,ipv?6?(?:,(?:nw|ipv6)_dst=(?P<dst>[\da-f.:/]+))?")


def flow_count(bridge: str, table: int = Table.FIB4) -> int:
    """How many flows the table holds, from the switch's table statistics.

    Not dump-aggregate: that walks every flow, and polling it at a million flows would take
    Open vSwitch's CPU away from the flow_mods being measured.
    """
    with FlowProbe(bridge) as probe:
        return probe.table_count(table)


def wait_count(bridge: str, predicate, what: str, interval: float = 0.005, tables: tuple = (Table.FIB4,)) -> float:
    """Until predicate(*counts), the flow count of each of `tables`, holds."""
    start = time.monotonic()
    with FlowProbe(bridge) as probe:
        while not predicate(*(count := [probe.table_count(table) for table in tables])):
            if time.monotonic() - start > TIMEOUT:
                raise TimeoutError(f"{what}: not done in {TIMEOUT:.0f} s (flows now {count})")
            time.sleep(interval)
    return time.monotonic()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int, field: str = "VmHWM") -> float:
    """The process's peak resident memory, or its current one with field="VmRSS"."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def ovs_pid() -> int:
    return int(Path("/var/run/openvswitch/ovs-vswitchd.pid").read_text())


def ovs_rss_mb() -> float:
    for line in Path(f"/proc/{ovs_pid()}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class RouteBench:
    GATEWAY4, GATEWAY6 = "10.0.2.2", "2001:db8:2::2"  # h2: the next hop of every benchmark route

    def __init__(self, routes: int, tls: bool = True):
        """`tls`: the switch connects over TLS (README, "Switches over TLS"), else over TCP."""
        self.routes = routes
        self.prefix = "rb" + secrets.token_hex(2)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.tmp = Path(tempfile.mkdtemp(prefix=f"{self.prefix}-"))
        self.pki = make_pki(self.tmp / "pki") if tls else None
        self.lab = Lab(self.prefix, self.port, dpid=0x7B0000 | int(self.prefix[2:], 16), pki=self.pki)
        self.router = f"{self.prefix}r"
        self.config = self.tmp / "taprouter.yaml"
        self.env = dict(os.environ, TAPROUTER_RUN_DIR=str(self.tmp / "run"))
        self.daemon: subprocess.Popen | None = None
        self.log = self.tmp / "daemon.log"
        self.metrics_listen: str | None = None  # ADDRESS:PORT for /metrics; off by default

    def up(self) -> None:
        self.lab.up()
        for n in (1, 2):
            self.lab.add_host(f"h{n}", n, f"10.0.{n}.2/24", f"2001:db8:{n}::2/64", f"10.0.{n}.1", f"2001:db8:{n}::1")
        self.config.write_text(yaml.safe_dump({
            "openflow": self.lab.openflow_config(),
            "database": f"sqlite:///{self.tmp / 'taprouter.db'}", "metrics": {"listen": self.metrics_listen},
            "routers": {self.router: {"dpid": self.lab.dpid, "netns": self.router, "ports": {
                n: {"tap": f"{self.prefix}p{n}", "addresses": [f"10.0.{n}.1/24", f"2001:db8:{n}::1/64"]}
                for n in (1, 2)}}}}))
        self.start()
        # Resolve the next hops, so every route becomes a flow with a group rather than a punt.
        self.lab.hosts[0].run("ping", "-c", "3", "-i", "0.2", self.GATEWAY4)
        self.lab.hosts[0].run("ping", "-6", "-c", "3", "-i", "0.2", self.GATEWAY6)
        hosts = {f"{self.GATEWAY4}/32", f"{self.GATEWAY6}/128"}
        wait_count(self.lab.bridge, lambda c: hosts <= set(self.route_flows()[0]), "host entries", 0.1)

    def start(self) -> float:
        started = time.monotonic()
        offset = self.log.stat().st_size if self.log.exists() else 0
        self.daemon = subprocess.Popen([TAPROUTER, "run", "-c", str(self.config)], env=self.env,
                                       stdout=subprocess.DEVNULL, stderr=open(self.log, "ab"))
        while True:
            text = self.log.read_text()[offset:]
            if "reconciled" in text:
                return time.monotonic() - started
            if self.daemon.poll() is not None or time.monotonic() - started > TIMEOUT:
                raise RuntimeError(f"daemon did not reconcile:\n{text[-3000:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.daemon is not None and self.daemon.poll() is None:
            self.daemon.terminate()
            self.daemon.wait(30)

    def down(self) -> None:
        try:
            self.stop()
        finally:
            try:
                subprocess.run([TAPROUTER, "down", "-c", str(self.config)], env=self.env, capture_output=True)
            except OSError as exc:  # no taprouter to run: the lab must go all the same
                log(f"taprouter down: {exc}")
            finally:
                self.lab.down()
                # A full table leaves ~80 MB of batch files; BENCH_KEEP=1 keeps them and the daemon log.
                if os.environ.get("BENCH_KEEP") == "1":
                    log(f"kept {self.tmp}")
                else:
                    shutil.rmtree(self.tmp, ignore_errors=True)

    def ifindex(self) -> int:
        with netns.iproute(self.router) as ipr:
            return ipr.link_lookup(ifname=f"{self.prefix}p2")[0]

    def load(self, results: dict) -> None:
        n, base = self.routes, flow_count(self.lab.bridge)
        batches = build(self.ifindex(), self.GATEWAY4, arrival(n, "20.0.0.0", 1))  # before the clock starts
        got = self.burst(batches, lambda c: c >= base + n, "load")
        results["load"] = self.stage_figures(got, n, "on_switch_s")
        log(f"load: {n} routes on the switch {got['done_s']:.2f} s after the first ({n / got['done_s']:.0f}/s); "
            f"producer {got['producer_s']:.2f} s; {got['cpu_line']}; {_stolen(got['steal'])}")

    def counts(self) -> tuple[int, int]:
        """The FIB tables' flow counts, IPv4 and IPv6."""
        with FlowProbe(self.lab.bridge) as probe:
            return probe.table_count(Table.FIB4), probe.table_count(Table.FIB6)

    @staticmethod
    def stage_figures(got: dict, routes: int, done_key: str) -> dict:
        """What a stage reports of a burst: its times, its rate and the CPU and steal during it."""
        return {"routes": routes, "producer_s": got["producer_s"], done_key: got["done_s"],
                "routes_per_s": round(routes / got["done_s"]), **got["cpu"], **got["steal"]}

    def burst(self, batches: list[bytes], done_when, what: str, routes: int | None = None,
               tables: tuple = (Table.FIB4,)) -> dict:
        """Send the producer's batches and wait until the switch's flow counts say done. The CPU
        the daemon and ovs-vswitchd used meanwhile, per route: with the kernel's own share
        (the producer's time) it shows which of them bounds the burst on two cores."""
        routes = routes or self.routes
        pids = {"daemon": self.daemon.pid, "ovs_vswitchd": ovs_pid()}
        cpu0 = {k: cpu_seconds(pid) for k, pid in pids.items()}
        with steal.Meter() as meter:
            t0 = time.monotonic()
            send(self.router, batches)
            produced = time.monotonic()
            done = wait_count(self.lab.bridge, done_when, what, tables=tables)
        per_route = {k: (cpu_seconds(pid) - cpu0[k]) / routes * 1e6 for k, pid in pids.items()}
        return {"producer_s": round(produced - t0, 3), "done_s": round(done - t0, 3),
                "cpu": {f"{k}_cpu_us_per_route": round(v, 1) for k, v in per_route.items()},
                "steal": meter.steal.figures(),
                "cpu_line": "CPU per route: " + ", ".join(f"{k} {v:.1f} us" for k, v in per_route.items())}

    def restart(self, results: dict) -> None:
        self.stop()
        with steal.Meter() as meter:
            took = self.start()
        line, stolen = [ln for ln in self.log.read_text().splitlines() if "reconciled" in ln][-1], meter.steal.figures()
        results["restart"] = {"routes": self.routes, "reconciled_s": round(took, 3), "log": line.split(": ", 1)[-1],
                              **stolen}
        log(f"restart with {self.routes} routes installed: reconciled in {took:.2f} s ({line.split(': ', 2)[-1]}); "
            f"{_stolen(stolen)}")

    def withdraw(self, results: dict) -> None:
        base = flow_count(self.lab.bridge) - self.routes
        batches = build(self.ifindex(), self.GATEWAY4, arrival(self.routes, "20.0.0.0", 2), delete=True)
        got = self.burst(batches, lambda c: c <= base, "withdrawal")
        results["withdraw"] = {"routes": self.routes, "producer_s": got["producer_s"], "off_switch_s": got["done_s"],
                               **got["cpu"], **got["steal"]}
        log(f"withdrawal: {self.routes} routes off the switch in {got['done_s']:.2f} s; the kernel took "
            f"{got['producer_s']:.2f} s to delete them; {got['cpu_line']}; {_stolen(got['steal'])}")

    def _ip_batches(self, verb: str, n: int) -> list[Path]:
        """`ip -batch` files of IP_BATCH_LINES lines: iproute2 grows to gigabytes on a million-line file."""
        files, nets = [], arrival(n, "30.0.0.0", 3 if verb == "add" else 4)
        for i in range(0, n, IP_BATCH_LINES):
            path = self.tmp / f"routes-{verb}-{i // IP_BATCH_LINES}.batch"
            path.write_text("".join(f"route {verb} {p} via {self.GATEWAY4}\n" for p in nets[i:i + IP_BATCH_LINES]))
            files.append(path)
        return files

    def ip_batch(self, results: dict) -> None:
        bridge, n, base = self.lab.bridge, self.routes, flow_count(self.lab.bridge)
        adds, dels = self._ip_batches("add", n), self._ip_batches("del", n)
        with steal.Meter() as meter:
            t0 = time.monotonic()
            for batch in adds:
                subprocess.run(["ip", "-n", self.router, "-batch", str(batch)], check=True)
            produced = time.monotonic()
            done = wait_count(bridge, lambda c: c >= base + n, "ip -batch load")
        stolen = meter.steal.figures()
        results["ip_batch"] = {"routes": n, "ip_s": round(produced - t0, 3), "on_switch_s": round(done - t0, 3),
                               "ratio_to_ip": round((done - t0) / (produced - t0), 2), **stolen}
        log(f"ip -batch: ip took {produced - t0:.2f} s, all on the switch after {done - t0:.2f} s "
            f"({(done - t0) / (produced - t0):.2f}x ip's own time); {_stolen(stolen)}")
        for batch in dels:
            subprocess.run(["ip", "-n", self.router, "-batch", str(batch)], check=True)
        wait_count(bridge, lambda c: c <= base, "ip -batch withdrawal")

    def single_changes(self, results: dict, count: int) -> None:
        """One route at a time on an idle router that holds the full table, timed until the
        switch holds its flow.

        The switch is asked for the IPv4 FIB table's flow count over one OpenFlow connection of the
        harness's own: each new route is one more flow. A round trip is a fraction of a
        millisecond whatever the table holds (0.19 ms at 1M flows), and the time is not
        quantised by starting ovs-ofctl. Asking for the route's flow by match, as this did
        until 2026-11-26 (on an empty table, before the load), makes Open vSwitch walk the flows
        of that mask: 152 ms a round trip at 1M.

        The harness waits PROBE_PAUSE between questions. Asking back to back kept a core busy
        with the asking and Open vSwitch's main thread with the answers, on a 2-core machine
        where the daemon and Open vSwitch need both: in two alternating pairs of 500 changes at
        1M routes, p50 2.8 and p99 6.0 to 9.3 ms back to back, against p50 2.2 and p99 3.4 ms
        with the pause. A time is late by at most the pause (and the sleep's overshoot).
        """
        index = self.ifindex()
        latencies = []
        with steal.Meter() as meter, FlowProbe(self.lab.bridge) as probe:
            before = probe.table_count(Table.FIB4)
            for i, dst in enumerate(prefixes(count, "40.0.0.0")):
                t0 = time.monotonic()
                inject(self.router, index, self.GATEWAY4, [dst])
                while probe.table_count(Table.FIB4) < before + i + 1:
                    if time.monotonic() - t0 > 30:
                        raise TimeoutError(f"{dst} not on the switch within 30 s")
                    time.sleep(PROBE_PAUSE)
                latencies.append(time.monotonic() - t0)
                time.sleep(IDLE_GAP)  # each change alone, on an otherwise idle router
        latencies.sort()
        p50, p99 = latencies[len(latencies) // 2], latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        stolen = meter.steal.figures()
        results["single_change"] = {"changes": count, "p50_ms": round(p50 * 1000, 2), "p99_ms": round(p99 * 1000, 2),
                                    "max_ms": round(latencies[-1] * 1000, 2), **stolen}
        log(f"single route change to the switch: p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms over {count}; "
            f"{_stolen(stolen)}")
        inject(self.router, index, self.GATEWAY4, prefixes(count, "40.0.0.0"), delete=True)
        wait_count(self.lab.bridge, lambda c: c <= before, "single changes withdrawn")  # the next stage counts from here

    def route_flows(self) -> tuple[set[str], int]:
        """The destinations of the route flows in both FIB tables, and how many go to the kernel."""
        return route_flows(self.lab.bridge)

    def verify(self, results: dict, stage: str) -> None:
        """Compare every FIB flow on the switch, both families, with the kernel's routes: nothing
        missing, nothing stale."""
        # Neighbour host entries, not kernel routes.
        hosts = {f"10.0.{n}.2/32" for n in (1, 2)} | {f"2001:db8:{n}::2/128" for n in (1, 2)}
        results.setdefault("verify", {})[stage] = check = compare(self.router, self.lab.bridge, hosts)
        log(f"verify after {stage}: {check['kernel_routes']} kernel routes, {check['switch_flows']} route flows, "
            f"{check['missing']} missing, {check['stale']} stale, {check['to_kernel']} to the kernel")
        if check["missing"] or check["stale"]:
            raise AssertionError(f"switch differs from the kernel after {stage}: missing {check['missing_some']}, "
                                 f"stale {check['stale_some']}")


def route_flows(bridge: str) -> tuple[set[str], int]:
    """The destinations of the route flows in both FIB tables, and how many go to the kernel."""
    dsts, punted = set(), 0
    for table, default in ((Table.FIB4, "0.0.0.0/0"), (Table.FIB6, "::/0")):
        out = sh("ovs-ofctl", "-O", "OpenFlow13", "--no-stats", "dump-flows", bridge,
                 f"table={table},cookie={ROUTE_COOKIE:#x}/-1")
        for line in out.splitlines():
            match = FLOW_LINE.search(line)
            if match is not None:
                dsts.add(str(ipaddress.ip_network(match.group("dst") or default)))
                punted += "CONTROLLER" in line
    return dsts, punted


def compare(router_netns: str, bridge: str, hosts: set[str]) -> dict:
    """The kernel's routes against the switch's route flows (both families); `hosts` are the
    neighbours' host entries, flows without a kernel route."""
    kernel = {str(prefix.to_network(pk)) for pk, _entry in dump_routes(router_netns)}
    switch, punted = route_flows(bridge)
    missing, stale = kernel - switch, switch - kernel - hosts
    return {"kernel_routes": len(kernel), "switch_flows": len(switch), "missing": len(missing), "stale": len(stale),
            "to_kernel": punted, "missing_some": sorted(missing)[:5], "stale_some": sorted(stale)[:5]}


def log(text: str) -> None:
    print(f"[routes] {text}", flush=True)


def _stolen(figures: dict) -> str:
    return f"host steal {figures['steal_s']:.2f} s ({figures['steal_pct']:.1f}% of the CPU)"


TIMED = ("load", "restart", "single_change", "withdraw")  # each attempt's stages, as results name them
ATTEMPTS = int(os.environ.get("BENCH_ATTEMPTS", "3"))


def attempt(bench: RouteBench, changes: int) -> dict:
    """One pass over the timed stages: load, restart, single changes on the full table, withdrawal."""
    figures: dict = {}
    bench.load(figures)
    bench.verify(figures, "load")
    bench.restart(figures)
    bench.verify(figures, "restart")
    bench.single_changes(figures, changes)
    bench.withdraw(figures)
    bench.verify(figures, "withdrawal")
    return figures


def headline(attempts: list[dict]) -> dict:
    """Each timed stage from the attempt where it saw the least steal (steal.least_disturbed);
    verification counts summed over every attempt, so a mismatch in any of them shows."""
    out: dict = {"attempts": attempts, "verify": {}}
    for stage in TIMED:
        index, figures = steal.least_disturbed(attempts, stage)
        out[stage] = {**figures, "attempt": index + 1}
    for stage, last in attempts[-1]["verify"].items():
        out["verify"][stage] = {**last, **{key: sum(a["verify"][stage][key] for a in attempts)
                                           for key in ("missing", "stale")}}
    return out


def main() -> int:
    routes = int(os.environ.get("BENCH_ROUTES", "1000000"))
    bench = RouteBench(routes, tls=True)
    results: dict = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cpus": os.cpu_count(),
                     "routes": routes, "order": ORDER, "transport": "tls", "steal_limit_pct": steal.LIMIT * 100}
    try:
        bench.up()
        attempts: list[dict] = []
        while True:
            attempts.append(attempt(bench, int(os.environ.get("BENCH_CHANGES", "1000"))))
            noisy = steal.disturbed(attempts[-1], TIMED)
            if not noisy or len(attempts) >= ATTEMPTS:
                break
            log(f"attempt {len(attempts)}: the host took {steal.LIMIT:.0%} or more of the CPU during "
                f"{', '.join(noisy)}; again")
        results.update(headline(attempts))
        bench.ip_batch(results)
        memory = lambda: {"daemon_peak_rss_mb": round(peak_rss_mb(bench.daemon.pid), 1),  # noqa: E731
                          "daemon_rss_mb": round(peak_rss_mb(bench.daemon.pid, "VmRSS"), 1),
                          "ovs_rss_mb": round(ovs_rss_mb(), 1)}
        results.update(memory())
        log(f"memory: daemon peak {results['daemon_peak_rss_mb']} MB, ovs-vswitchd {results['ovs_rss_mb']} MB")
        fulltable.run(bench, results, log, memory)  # IPv4 and IPv6 together, after the IPv4-only peak above
    finally:
        bench.down()
    # The same load and withdrawal with the switch over plain TCP, for comparison (one attempt).
    tcp = RouteBench(routes, tls=False)
    results["tcp"] = {}
    try:
        tcp.up()
        tcp.load(results["tcp"])
        tcp.verify(results["tcp"], "load")
        tcp.withdraw(results["tcp"])
    finally:
        tcp.down()
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    log(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
