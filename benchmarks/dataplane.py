#!/usr/bin/env python3
"""Data-plane benchmark: taprouter's punt path and offloaded routing against a plain L2 baseline.

Builds its own lab (an Open vSwitch bridge on the userspace datapath, hosts in
network namespaces), runs `taprouter run` on a generated config, and measures in
one run, so that the ratios compare like with like on the same noisy machine:

1. punt-path RTT: h1 pings its router address (PacketIn -> TAP -> kernel -> TAP ->
   PacketOut), against two hosts on the same bridge joined by one plain flow each way;
2. routed TCP throughput (iperf3, h1 -> h2 through the FIB table and a next-hop group)
   against the same L2 pair;
3. how many PacketIns the routed run caused (the relay's `to_tap` counter and the
   CONTROLLER flows of the FIB tables), which should be about none;
4. punt throughput in packets per second, both ways: UDP host -> router kernel
   (counted on the TAP and in the router's /proc/net/snmp) and router kernel -> host
   (counted on the host's eth0), at a ladder of offered rates and unpaced.

Usage: .venv/bin/python benchmarks/dataplane.py [--quick]
Writes benchmarks/dataplane.json. Everything it creates is named with a unique prefix
and removed at the end, even on failure or Ctrl-C; it signals only processes it started.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import re
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from benchmarks.dataplane_report import relay_loss, report  # noqa: E402

from taprouter.lab import Lab  # noqa: E402

TAPROUTER = ROOT / ".venv" / "bin" / "taprouter"
PYTHON = sys.executable
OUT = ROOT / "benchmarks" / "dataplane.json"
L2_COOKIE = "0x1"
UDP_PORT = 9  # discard; closed on both ends, which is fine: we count frames, not replies

# The traffic generator flood() runs inside a namespace.
SENDER = ROOT / "benchmarks" / "flood_sender.py"

# --- small utilities ------------------------------------------------------------------------

def log(text: str) -> None:
    try:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)
    except OSError:  # stdout gone (a closed pipe): never let that cut the teardown short
        pass


def run(*cmd, netns: str | None = None, check: bool = True, timeout: float = 30,
        env: dict | None = None) -> subprocess.CompletedProcess:
    full = (["ip", "netns", "exec", netns] if netns else []) + [str(c) for c in cmd]
    proc = subprocess.run(full, capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(full)} exited {proc.returncode}: "
                           f"{proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def wait_until(predicate, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def ratio(a, b):
    return round(a / b, 3) if a is not None and b else None


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def existing_names() -> set[str]:
    names = set(run("ovs-vsctl", "list-br", check=False).stdout.split())
    names |= {line.split()[0] for line in run("ip", "netns", "list", check=False).stdout.splitlines()
              if line.strip()}
    names |= {line.split(":")[1].strip().split("@")[0]
              for line in run("ip", "-o", "link", "show", check=False).stdout.splitlines() if ":" in line}
    return names


def unique_prefix() -> str:
    names = existing_names()
    for _ in range(100):
        prefix = "bn" + secrets.token_hex(2)[:3]  # e.g. bn3fa: "bn3fas11" is 8 characters
        if not any(n.startswith(prefix) for n in names):
            return prefix
    raise RuntimeError("no free benchmark prefix")


def cpu_ticks(pid: int) -> int | None:
    """utime + stime of a process, in clock ticks."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(") ", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return None


def cpu_snap() -> tuple[int, int]:
    """(total, busy) ticks summed over all CPUs, from /proc/stat."""
    with open("/proc/stat") as f:
        vals = [int(v) for v in f.readline().split()[1:]]
    total = sum(vals[:8])  # guest time is already counted in user
    return total, total - vals[3] - vals[4]  # minus idle and iowait


def machine_busy(seconds: float = 1.0) -> float:
    """Fraction of all CPUs busy over a short window."""
    t0, b0 = cpu_snap()
    time.sleep(seconds)
    t1, b1 = cpu_snap()
    return (b1 - b0) / max(1, t1 - t0)


# --- the benchmark --------------------------------------------------------------------------

class Bench:
    def __init__(self, quick: bool):
        self.quick = quick
        self.prefix = unique_prefix()
        self.controller_port = free_tcp_port()
        self.dpid = 0xBE0000 | int(self.prefix[2:], 16)
        self.lab = Lab(self.prefix, self.controller_port, dpid=self.dpid)
        self.router = f"{self.prefix}r"
        self.router_ns = f"{self.prefix}r"
        self.taps = {1: f"{self.prefix}p1", 2: f"{self.prefix}p2"}
        self.tmp = Path(tempfile.mkdtemp(prefix=f"{self.prefix}-"))
        self.run_dir = self.tmp / "run"
        self.config_path = self.tmp / "taprouter.yaml"
        self.log_path = self.tmp / "daemon.log"
        self.env = {**os.environ, "TAPROUTER_RUN_DIR": str(self.run_dir)}
        self.daemon: subprocess.Popen | None = None
        self.procs: list[subprocess.Popen] = []  # everything else we started, by PID
        self.sleepers: dict[str, subprocess.Popen] = {}
        self.notes: list[str] = []
        self.quiet_budget = 25.0 if quick else 45.0  # seconds we may spend waiting for a quiet machine
        self.results: dict = {}

    # -- lab ---------------------------------------------------------------------------------

    def build(self) -> None:
        log(f"building lab {self.prefix} (bridge {self.lab.bridge}, controller port {self.controller_port})")
        self.lab.up()
        self.h1 = self.lab.add_host("h1", 1, "10.0.1.2/24", gateway4="10.0.1.1")
        self.h2 = self.lab.add_host("h2", 2, "10.0.2.2/24", gateway4="10.0.2.1")
        self.l2a = self.lab.add_host("h11", 11, "10.9.0.1/24")
        self.l2b = self.lab.add_host("h12", 12, "10.9.0.2/24")
        self.add_l2_flows()
        config = {
            "openflow": {"listen": f"127.0.0.1:{self.controller_port}"},
            "routers": {self.router: {
                "dpid": self.dpid,
                "netns": self.router_ns,
                "ports": {1: {"tap": self.taps[1], "addresses": ["10.0.1.1/24"]},
                          2: {"tap": self.taps[2], "addresses": ["10.0.2.1/24"]}},
            }},
        }
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    def add_l2_flows(self) -> None:
        for a, b in ((11, 12), (12, 11)):
            run("ovs-ofctl", "-O", "OpenFlow13", "add-flow", self.lab.bridge,
                f"table=0,priority=1000,cookie={L2_COOKIE},in_port={a},actions=output:{b}")

    def l2_flow_count(self) -> int:
        out = run("ovs-ofctl", "-O", "OpenFlow13", "dump-flows", self.lab.bridge,
                  f"cookie={L2_COOKIE}/-1").stdout
        return sum(1 for line in out.splitlines() if "cookie=" in line)

    def start_daemon(self) -> None:
        log("starting taprouter run")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as logf:
            self.daemon = subprocess.Popen([str(TAPROUTER), "run", "-c", str(self.config_path)],
                                           cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL,
                                           stdout=logf, stderr=subprocess.STDOUT,
                                           start_new_session=True)

        def reconciled():
            if self.daemon.poll() is not None:
                raise RuntimeError(f"taprouter exited {self.daemon.returncode}:\n{self.log_path.read_text()}")
            return "reconciled" in self.log_path.read_text()

        wait_until(reconciled, 30, "the daemon to log 'reconciled'")
        wait_until(lambda: "arp_tpa=10.0.1.1" in self.dump_flows(1), 15, "the punt flows")
        # Our cookie-0x1 flows are not taprouter's: its reconciler must leave them alone.
        if self.l2_flow_count() != 2:
            self.notes.append("the L2 baseline flows were removed when taprouter reconciled; re-added")
            self.add_l2_flows()
        # Processes parked in the namespaces, so their counters can be read cheaply from
        # /proc/PID/net/{dev,snmp} while a flood runs (ip netns exec execs in place).
        for ns in (self.router_ns, self.h1.name):
            proc = subprocess.Popen(["ip", "netns", "exec", ns, "sleep", "3600"],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
            self.procs.append(proc)
            self.sleepers[ns] = proc

    def cleanup(self) -> None:
        """Stop what we started (by PID), then remove the router and the lab; each step runs
        even when an earlier one failed."""
        log("cleaning up")
        t0 = time.monotonic()

        def step(what: str, action) -> None:
            try:
                action()
            except Exception as exc:  # report, keep going, and do not mask the original error
                log(f"cleanup: {what} failed: {exc!r}")

        def stop(proc: subprocess.Popen, grace: float) -> None:
            if proc.poll() is None:
                proc.terminate()
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

        for proc in self.procs:
            if proc.poll() is None:
                step(f"terminating pid {proc.pid}", proc.terminate)
        for proc in self.procs:
            step(f"stopping pid {proc.pid}", lambda: stop(proc, 5))
        if self.daemon is not None:
            step(f"stopping the daemon (pid {self.daemon.pid})", lambda: stop(self.daemon, 10))

        def router_down():
            proc = run(str(TAPROUTER), "down", "-c", self.config_path, env=self.env, check=False,
                       timeout=60)
            if proc.returncode != 0:
                log(f"taprouter down failed: {proc.stderr.strip()}")
        if self.config_path.exists():
            step("taprouter down", router_down)
        step("lab down", self.lab.down)

        def leftovers():
            left = sorted(n for n in existing_names() if n.startswith(self.prefix))
            if left:
                log(f"WARNING: left behind: {left}")
        step("checking for leftovers", leftovers)
        shutil.rmtree(self.tmp, ignore_errors=True)
        log(f"cleaned up in {time.monotonic() - t0:.1f} s")

    # -- observation -------------------------------------------------------------------------

    def dump_flows(self, table: int) -> str:
        return run("ovs-ofctl", "-O", "OpenFlow13", "dump-flows", self.lab.bridge, f"table={table}").stdout

    def controller_flow_packets(self) -> dict[str, int]:
        """n_packets of every CONTROLLER flow in the FIB tables (2 and 3), keyed by its match."""
        result = {}
        for table in (2, 3):
            for line in self.dump_flows(table).splitlines():
                if "CONTROLLER" not in line:
                    continue
                n = int(re.search(r"n_packets=(\d+)", line).group(1))
                prio = re.search(r"priority=(\d+)", line)
                match = line.split("priority=")[1].split(" actions=")[0] if prio else "(miss)"
                match = re.sub(r"^\d+,?", "", match) or "table-miss"
                result[f"table {table} prio {prio.group(1) if prio else 0} {match}"] = n
        return result

    def port_stats(self) -> dict[int, dict[str, int]]:
        """Open vSwitch's own per-port counters (rx/tx packets and drops)."""
        out = run("ovs-ofctl", "-O", "OpenFlow13", "dump-ports", self.lab.bridge).stdout
        stats: dict[int, dict[str, int]] = {}
        for m in re.finditer(r"port\s+(\d+): rx pkts=(\d+), bytes=\d+, drop=(\d+), errs=(\d+).*?\n"
                             r"\s+tx pkts=(\d+), bytes=\d+, drop=(\d+), errs=(\d+)", out):
            port, rx, rxd, rxe, tx, txd, txe = (int(x) for x in m.groups())
            stats[port] = {"rx": rx, "rx_drop": rxd, "rx_errs": rxe, "tx": tx, "tx_drop": txd, "tx_errs": txe}
        return stats

    def link_drops(self, links: list[tuple[str | None, str]]) -> dict[str, int]:
        """Kernel drop/error counters of (netns, ifname) links, keyed 'netns/ifname direction'."""
        result = {}
        for ns, ifname in links:
            data = json.loads(run("ip", *(["-n", ns] if ns else []), "-j", "-s", "link", "show",
                                  "dev", ifname).stdout)[0]["stats64"]
            for direction in ("rx", "tx"):
                for key in ("dropped", "errors"):
                    result[f"{ns or 'root'}/{ifname} {direction}_{key}"] = data[direction][key]
        return result

    def port_delta(self, before, after, ports) -> dict:
        return {p: {k: after[p][k] - before[p][k] for k in after[p] if after[p][k] - before[p][k]}
                for p in ports if p in before and p in after}

    def flow_packets(self, table: int, needle: str) -> int:
        return sum(int(re.search(r"n_packets=(\d+)", line).group(1))
                   for line in self.dump_flows(table).splitlines() if needle in line)

    def status(self, newer_than: float | None = None) -> dict:
        """The daemon's status.json; with newer_than, wait until it was written after that time."""
        path = self.run_dir / self.router / "status.json"

        def read():
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError):
                return None
            return data if newer_than is None or data.get("time", 0) > newer_than else None

        return wait_until(read, 5, "status.json to refresh", interval=0.05)

    def relay_now(self) -> dict:
        """Relay counters written after this call started (the file is rewritten every second)."""
        return self.status(newer_than=time.time())["relay"]

    def netdev(self, ns: str, ifname: str) -> dict[str, int]:
        with open(f"/proc/{self.sleepers[ns].pid}/net/dev") as f:
            for line in f:
                name, _, rest = line.partition(":")
                if name.strip() == ifname:
                    v = [int(x) for x in rest.split()]
                    return {"rx_packets": v[1], "rx_dropped": v[3], "tx_packets": v[9], "tx_dropped": v[11]}
        raise KeyError(f"{ifname} not in netns {ns}")

    def snmp(self, ns: str, proto: str = "Udp") -> dict[str, int]:
        with open(f"/proc/{self.sleepers[ns].pid}/net/snmp") as f:
            rows = [line.split() for line in f if line.startswith(f"{proto}:")]
        return dict(zip(rows[0][1:], (int(x) for x in rows[1][1:])))

    # -- 1. RTT --------------------------------------------------------------------------------

    def pings(self, host, target: str, count: int, interval: float) -> tuple[list[float], int]:
        proc = run("ping", "-n", "-c", count, "-i", interval, "-W", 1, target, netns=host.name,
                   check=False, timeout=count * (interval + 0.01) + 30)
        times = [float(m) for m in re.findall(r"time=([\d.]+) ms", proc.stdout)]
        return times, count - len(times)

    def bench_rtt(self) -> None:
        count, chunks = 1000, 4  # alternate punt and L2 in chunks, so drift hits both alike
        log(f"RTT: {count} pings h1 -> 10.0.1.1 (punt) and h11 -> h12 (L2), interleaved in {chunks} chunks")
        samples = {"punt": ([], 0), "l2": ([], 0)}
        for _ in range(chunks):
            for kind, host, target in (("punt", self.h1, "10.0.1.1"), ("l2", self.l2a, "10.9.0.2")):
                times, lost = self.pings(host, target, count // chunks, 0.005)
                samples[kind] = (samples[kind][0] + times, samples[kind][1] + lost)
        out = {}
        for kind, (times, lost) in samples.items():
            if not times:
                raise RuntimeError(f"no {kind} ping was answered")
            out[kind] = {"n": len(times), "lost": lost, "p50_ms": percentile(times, 50),
                         "p99_ms": percentile(times, 99), "mean_ms": round(sum(times) / len(times), 4),
                         "min_ms": min(times), "max_ms": max(times)}
        out["ratio_punt_over_l2"] = {"p50": ratio(out["punt"]["p50_ms"], out["l2"]["p50_ms"]),
                                     "p99": ratio(out["punt"]["p99_ms"], out["l2"]["p99_ms"])}
        self.results["rtt"] = out

    # -- 2 + 3. throughput ---------------------------------------------------------------------

    def iperf(self, server, client, target: str, seconds: int) -> dict:
        srv = subprocess.Popen(["ip", "netns", "exec", server.name, "iperf3", "-s", "-1", "-p", "5201"],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(srv)
        wait_until(lambda: ":5201" in run("ss", "-ltnH", netns=server.name).stdout, 10, "iperf3 server")
        links = [(None, self.lab.switch_veth(h.port)) for h in (client, server)]
        links += [(h.name, "eth0") for h in (client, server)]
        ports0, links0 = self.port_stats(), self.link_drops(links)
        proc = run("iperf3", "-c", target, "-p", "5201", "-t", seconds, "-J", netns=client.name,
                   check=False, timeout=seconds + 30)
        try:
            srv.wait(10)
        except subprocess.TimeoutExpired:
            srv.terminate()
        ports1, links1 = self.port_stats(), self.link_drops(links)
        try:
            data = json.loads(proc.stdout)
        except ValueError:
            raise RuntimeError(f"iperf3 gave no JSON: {proc.stdout[-500:]} {proc.stderr[-500:]}") from None
        if "error" in data:
            raise RuntimeError(f"iperf3: {data['error']}")
        end = data["end"]
        intervals = [i["sum"]["bits_per_second"] for i in data.get("intervals", [])]
        return {"seconds": seconds,
                "received_bps": end["sum_received"]["bits_per_second"],
                "sent_bps": end["sum_sent"]["bits_per_second"],
                "retransmits": end["sum_sent"].get("retransmits"),
                "min_interval_bps": min(intervals) if intervals else None,
                "zero_intervals": sum(1 for b in intervals if b == 0),
                "ovs_port_deltas": self.port_delta(ports0, ports1, (client.port, server.port)),
                # Frames the client's veth delivered to OVS that OVS never sent on to the server:
                # lost in the userspace datapath (its AF_PACKET receive), not counted as drops.
                "lost_in_ovs": ((ports1[client.port]["rx"] - ports0[client.port]["rx"])
                                - (ports1[server.port]["tx"] - ports0[server.port]["tx"])),
                "veth_drop_deltas": {k: links1[k] - links0[k] for k in links1 if links1[k] - links0[k]}}

    def warm_routed(self) -> None:
        log("warming the routed path (pings both ways until the /32 host flows exist)")
        start = time.monotonic()
        for host, target in ((self.h1, "10.0.2.2"), (self.h2, "10.0.1.2")):
            run("ping", "-n", "-c", 3, "-i", 0.2, "-W", 2, target, netns=host.name, timeout=20)

        def host_flows():
            flows = self.dump_flows(2)
            return all(re.search(rf"nw_dst={ip}[ ,].*group:", flows) for ip in ("10.0.1.2", "10.0.2.2"))
        present = True
        try:
            wait_until(host_flows, 15, "the /32 host flows with next-hop groups in table 2")
        except TimeoutError:
            present = False
        info = {"host_flows_present": present,
                "seconds_from_first_ping": round(time.monotonic() - start, 2)}
        if not present:
            # Keep what explains it: the kernel's view against the switch's, and the daemon's word.
            status = self.status()
            info["diagnostics"] = {
                "router_neighbours": run("ip", "-n", self.router_ns, "neigh", "show").stdout.splitlines(),
                "router_routes": run("ip", "-n", self.router_ns, "route", "show").stdout.splitlines(),
                "table_2": self.dump_flows(2).splitlines()[1:],
                "status": {k: status.get(k) for k in ("flows_installed", "groups_installed",
                                                      "kernel_routes", "last_reconcile",
                                                      "switch_errors", "netlink_resyncs")},
                "daemon_log_tail": self.log_path.read_text().splitlines()[-15:],
            }
            self.notes.append("the /32 host flows did not appear in table 2 within 15 s of the warm-up "
                              "pings: the routed run went through the kernel (see routed_path.diagnostics)")
            log("WARNING: no /32 host flows in table 2:\n" + json.dumps(info["diagnostics"], indent=1))
        self.results["routed_path"] = info

    def bench_throughput(self) -> None:
        seconds = 3 if self.quick else 10
        run("ping", "-n", "-c", 3, "-i", 0.2, "-W", 2, "10.9.0.2", netns=self.l2a.name, timeout=20)
        log(f"throughput: iperf3 TCP {seconds} s, L2 baseline h11 -> h12")
        l2 = self.iperf(self.l2b, self.l2a, "10.9.0.2", seconds)
        self.warm_routed()
        relay_before = self.relay_now()
        flows_before = self.controller_flow_packets()
        log(f"throughput: iperf3 TCP {seconds} s, routed h1 -> h2 (10.0.2.2)")
        routed = self.iperf(self.h2, self.h1, "10.0.2.2", seconds)
        flows_after = self.controller_flow_packets()
        relay_after = self.relay_now()
        self.results["throughput"] = {
            "l2": l2, "routed": routed,
            "ratio_routed_over_l2": ratio(routed["received_bps"], l2["received_bps"])}
        per_flow = {k: flows_after.get(k, 0) - flows_before.get(k, 0)
                    for k in sorted(set(flows_before) | set(flows_after))}
        self.results["packet_ins_during_routed_run"] = {
            "relay_to_tap": relay_after["to_tap"] - relay_before["to_tap"],
            "relay_to_switch": relay_after["to_switch"] - relay_before["to_switch"],
            "fib_controller_flows_n_packets": sum(per_flow.values()),
            "per_flow": per_flow,
            "note": "relay deltas span the iperf3 run plus up to ~2 s of status.json refresh on each side",
        }

    # -- 4. punt throughput --------------------------------------------------------------------

    def flood(self, ns: str, dst: str, rate: float, seconds: float, count_rx, port: int = UDP_PORT,
              src: str = "") -> dict:
        """Send UDP (TCP resets to port 179, from src) from netns `ns` to dst; count_rx() reads the
        receive-side counter."""
        count = int(rate * seconds) if rate > 0 else (40000 if self.quick else 80000)
        max_time = seconds + 1 if rate > 0 else seconds
        rx0 = count_rx()
        cpu0 = {"daemon": cpu_ticks(self.daemon.pid), "ovs": cpu_ticks(self.ovs_pid)}
        machine0, children0 = cpu_snap(), resource.getrusage(resource.RUSAGE_CHILDREN)
        c0 = time.monotonic()
        sender = subprocess.Popen(["ip", "netns", "exec", ns, PYTHON, str(SENDER), dst, str(port),
                                   str(count), str(rate), str(max_time), src],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
        self.procs.append(sender)
        samples = [(time.monotonic(), rx0)]
        while sender.poll() is None:
            samples.append((time.monotonic(), count_rx()))
            time.sleep(0.01)
        stats = json.loads(sender.stdout.read())
        children1 = resource.getrusage(resource.RUSAGE_CHILDREN)  # the sender is now reaped
        # Let queues (OVS -> controller socket, TAP ring) drain: wait until the counter is still.
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < 0.5 and time.monotonic() - stats["t1"] < 20:
            value = count_rx()
            if value != samples[-1][1]:
                quiet_since = time.monotonic()
            samples.append((time.monotonic(), value))
            time.sleep(0.01)
        c1 = time.monotonic()
        cpu1 = {"daemon": cpu_ticks(self.daemon.pid), "ovs": cpu_ticks(self.ovs_pid)}
        machine1 = cpu_snap()
        delivered = samples[-1][1] - rx0
        # When the counter reached its final value: the end of the delivery window.
        last_rise = min(t for t, v in samples if v == samples[-1][1])
        send_time = max(1e-6, stats["t1"] - stats["t0"])
        window = max(send_time, last_rise - stats["t0"])
        hz = os.sysconf("SC_CLK_TCK")
        cpu = {k: None if cpu0[k] is None or cpu1[k] is None else
               round(100 * (cpu1[k] - cpu0[k]) / hz / (c1 - c0), 1) for k in cpu0}
        cpu["sender"] = round(100 * ((children1.ru_utime + children1.ru_stime)
                                     - (children0.ru_utime + children0.ru_stime)) / (c1 - c0), 1)
        # Machine-wide busy time in "% of one CPU", less what the daemon, vswitchd and the sender
        # used: roughly what the kernel's softirqs and everything else on the machine (other
        # sessions' tests) took meanwhile.
        machine_pct = 100 * os.cpu_count() * (machine1[1] - machine0[1]) / max(1, machine1[0] - machine0[0])
        cpu["others"] = round(machine_pct - sum(v or 0 for v in cpu.values()), 1)
        return {"offered_pps": round(stats["sent"] / send_time) if rate <= 0 else rate,
                "send_s": round(send_time, 3),
                # How long deliveries went on after the sender stopped: the queue in front of the
                # relay (mostly the OpenFlow TCP connection), i.e. the extra delay a punted frame saw.
                "drain_s": round(max(0.0, last_rise - stats["t1"]), 3),
                "achieved_send_pps": round(stats["sent"] / send_time),
                "sent": stats["sent"], "send_errors": stats["errors"], "delivered": delivered,
                "delivered_pps": round(delivered / window),
                "loss_pct": round(100 * (1 - delivered / stats["sent"]), 2) if stats["sent"] else None,
                "cpu_pct_daemon": cpu["daemon"], "cpu_pct_ovs_vswitchd": cpu["ovs"],
                "cpu_pct_sender": cpu["sender"], "cpu_pct_rest_of_machine": cpu["others"]}

    def bench_punt_rate(self) -> None:
        seconds = 0.5 if self.quick else 1.0
        rates = [1000, 2000, 5000, 7500, 10000, 15000, 20000, 0]  # 0: unpaced, bounded in count and time
        # Make sure the router kernel knows h1 (the reverse flood must not wait for ARP).
        run("ping", "-n", "-c", 2, "-i", 0.2, "-W", 2, "10.0.1.2", netns=self.router_ns, timeout=20)
        out = {}

        def udp_in(ns: str) -> int:
            # Every datagram the receiving kernel took in: to a closed port (NoPorts), or not.
            snmp = self.snmp(ns)
            return snmp["InDatagrams"] + snmp["NoPorts"] + snmp["InErrors"]

        def tcp_in(ns: str) -> int:
            return self.snmp(ns, "Tcp")["InSegs"]  # counted before any check, as the kernel says

        # (direction, sender netns, destination, port, rates, receive counter, counted at, punt flow)
        # UDP to the router's address is policed (PUNT_METER); TCP to port 179 is the BGP class,
        # never metered, so it shows what the relay itself carries.
        directions = (
            ("host_to_kernel", self.h1.name, "10.0.1.1", UDP_PORT, rates, lambda: udp_in(self.router_ns),
             "router netns /proc/net/snmp Udp InDatagrams+NoPorts+InErrors", "nw_dst=10.0.1.1 "),
            ("host_to_kernel_bgp_class", self.h1.name, "10.0.1.1", 179,
             [5000, 10000, 20000, 30000, 40000, 50000, 60000, 0], lambda: tcp_in(self.router_ns),
             "router netns /proc/net/snmp Tcp InSegs", "tp_dst=179"),
            ("kernel_to_host", self.router_ns, "10.0.1.2", UDP_PORT, rates, lambda: udp_in(self.h1.name),
             "h1 /proc/net/snmp Udp InDatagrams+NoPorts+InErrors", None),
        )
        for direction, ns, dst, port, steps_rates, count_rx, counted_at, punt_flow in directions:
            self.context(f"punt_rate_{direction}")
            steps = []
            relay0 = self.relay_now()  # each step's "after" is the next step's "before"
            for rate in steps_rates:
                log(f"punt rate {direction}: {'unpaced' if rate == 0 else f'{rate} pps'} for {seconds:g} s")
                quiet = self.wait_quiet(5)
                ports0 = self.port_stats()
                tap0 = self.netdev(self.router_ns, self.taps[1])
                punt0 = self.flow_packets(1, punt_flow) if punt_flow else 0
                step = self.flood(ns, dst, rate, seconds, count_rx, port, "10.0.1.2")
                ports1 = self.port_stats()
                tap1 = self.netdev(self.router_ns, self.taps[1])
                relay1 = self.relay_now()
                step["machine_before"] = quiet
                step["relay"] = {k: relay1[k] - relay0[k] for k in relay1 if relay1[k] - relay0[k]}
                relay0 = relay1
                step["router_tap"] = {k: tap1[k] - tap0[k] for k in tap1}
                step["ovs_port_1"] = self.port_delta(ports0, ports1, (1,)).get(1, {})
                if punt_flow:
                    # The userspace datapath's flow stats reach OpenFlow a little late: read until still.
                    count, last = self.flow_packets(1, punt_flow), None
                    while count != last:
                        time.sleep(0.3)
                        count, last = self.flow_packets(1, punt_flow), count
                    step["ovs_punt_flow_n_packets"] = count - punt0
                # Sustained: (almost) nothing lost, and delivered about as fast as offered, not
                # merely absorbed by queues and trickled out after the sender stopped.
                step["sustained"] = (step["loss_pct"] is not None and step["loss_pct"] <= 1.0
                                     and step["delivered_pps"] >= 0.9 * step["offered_pps"])
                steps.append(step)
                time.sleep(0.2)
            out[direction] = {
                "counted_at": counted_at,
                "steps": steps,
                "max_delivered_pps": max(s["delivered_pps"] for s in steps),
                "max_sustained_offered_pps": max((s["offered_pps"] for s in steps if s["sustained"]),
                                                 default=None),
            }
            if punt_flow:  # what matched the punt flow and never reached the TAP, over all steps
                out[direction]["punt_flow_to_tap_lost"] = sum(relay_loss(s) for s in steps)
        self.results["punt_rate"] = out

    # -- run ---------------------------------------------------------------------------------

    def wait_quiet(self, max_wait: float) -> dict:
        """Wait (within a run-wide budget) until the machine is quiet; other sessions share it.

        Our own lab idles at a few per cent, so "quiet" is under 20 % of all CPUs busy.
        """
        start = time.monotonic()
        while True:
            busy = machine_busy(0.3)
            waited = time.monotonic() - start
            if busy < 0.20 or waited >= min(max_wait, self.quiet_budget):
                break
        self.quiet_budget = max(0.0, self.quiet_budget - waited)
        return {"busy_pct": round(100 * busy, 1), "waited_s": round(waited, 1)}

    def context(self, phase: str) -> None:
        """Wait for a quiet machine before a phase, and record how busy it was."""
        quiet = self.wait_quiet(15)
        others = [b for b in run("ovs-vsctl", "list-br").stdout.split() if b != self.lab.bridge]
        self.results.setdefault("machine_before_phase", {})[phase] = {
            "cpu_busy_pct": quiet["busy_pct"], "waited_s": quiet["waited_s"],
            "loadavg1": float(Path("/proc/loadavg").read_text().split()[0]),
            "other_ovs_bridges": others}

    def run(self) -> None:
        self.ovs_pid = int(Path("/var/run/openvswitch/ovs-vswitchd.pid").read_text().strip())
        self.build()
        self.start_daemon()
        self.relay_start = self.status()["relay"]
        log("daemon reconciled; first punt ping")
        wait_until(lambda: run("ping", "-n", "-c", 1, "-W", 1, "10.0.1.1", netns=self.h1.name,
                               check=False).returncode == 0, 20, "h1 to reach 10.0.1.1")
        self.context("rtt")
        self.bench_rtt()
        self.context("throughput")
        self.bench_throughput()
        self.bench_punt_rate()
        if self.l2_flow_count() != 2:
            self.notes.append("the L2 baseline flows were gone at the end of the run")
        relay = self.relay_now()
        self.results["relay_counters_whole_run"] = {k: relay[k] - self.relay_start.get(k, 0) for k in relay}
        for key in ("write_errors", "send_dropped", "oversize", "runt", "unknown_port"):
            if relay.get(key):
                self.notes.append(f"relay counter {key}: {relay[key]} since the daemon started "
                                  f"({relay[key] - self.relay_start.get(key, 0)} during the measurements)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 s iperf3 runs and shorter floods")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("dataplane.py needs root (namespaces, Open vSwitch)", file=sys.stderr)
        return 2
    subprocess.run(["bash", str(ROOT / "scripts" / "ovs-start.sh")], check=True, stdout=subprocess.DEVNULL)

    def on_term(signum, _frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)
    signal.signal(signal.SIGTERM, on_term)
    # Also when started in the background, where a shell leaves SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    started = time.monotonic()
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "ovs": run("ovs-vsctl", "--version").stdout.splitlines()[0],
        # The tree moves under a shared checkout: say which taprouter was measured.
        "taprouter_commit": run("git", "-C", ROOT, "rev-parse", "--short", "HEAD",
                                check=False).stdout.strip(),
        "taprouter_tree_dirty": bool(run("git", "-C", ROOT, "status", "--porcelain", "--", "taprouter",
                                         check=False).stdout.strip()),
        "loadavg_before": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
        "cpu_busy_before_pct": round(100 * machine_busy(1.0), 1),
        "other_ovs_bridges": len(run("ovs-vsctl", "list-br").stdout.split()),
        "quick": args.quick,
    }
    if meta["cpu_busy_before_pct"] > 25:
        log(f"note: the machine is {meta['cpu_busy_before_pct']}% busy before the run; figures will be noisy")
    bench = Bench(args.quick)
    ok = False
    try:
        bench.run()
        ok = True
    except KeyboardInterrupt:
        log("interrupted")
    except Exception as exc:
        log(f"FAILED: {exc!r}")
        if bench.log_path.exists():
            print("--- daemon log (tail) ---\n" + "\n".join(bench.log_path.read_text().splitlines()[-40:]))
    finally:
        # A second Ctrl-C must not cut the teardown short.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        bench.cleanup()
    if not ok:
        return 1
    meta["prefix"] = bench.prefix
    meta["elapsed_s"] = round(time.monotonic() - started, 1)
    data = {"meta": meta, **bench.results, "notes": bench.notes}
    OUT.write_text(json.dumps(data, indent=2) + "\n")
    report(meta, bench.results, bench.notes, OUT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
