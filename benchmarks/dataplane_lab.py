"""The data-plane benchmark's lab: the bridge, hosts and taprouter daemon it measures, and process helpers.

Bench (benchmarks/dataplane.py) builds on BenchLab: this module sets up and tears down the
lab, starts the daemon, and reads the counters (OpenFlow flows and ports, kernel links,
the daemon's status.json, /proc) that the measurements compare.
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import yaml

from taprouter.controller.openflow.pipeline import Table
from taprouter.lab import Lab, make_pki

ROOT = Path(__file__).resolve().parent.parent
TAPROUTER = ROOT / ".venv" / "bin" / "taprouter"
L2_COOKIE = "0x1"

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


# --- the lab -------------------------------------------------------------------------------

class BenchLab:
    """The lab, the daemon and the processes started for a run, and the counters read
    from them; cleanup() removes it all."""

    def __init__(self, quick: bool, tls: bool = False):
        self.quick = quick
        self.prefix = unique_prefix()
        self.controller_port = free_tcp_port()
        self.dpid = 0xBE0000 | int(self.prefix[2:], 16)
        self.router = f"{self.prefix}r"
        self.router_ns = f"{self.prefix}r"
        self.taps = {1: f"{self.prefix}p1", 2: f"{self.prefix}p2"}
        self.tmp = Path(tempfile.mkdtemp(prefix=f"{self.prefix}-"))
        self.pki = make_pki(self.tmp / "pki") if tls else None  # the switch over TLS, else TCP
        self.lab = Lab(self.prefix, self.controller_port, dpid=self.dpid, pki=self.pki)
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
            "openflow": self.lab.openflow_config(),
            "database": f"sqlite:///{self.config_path.parent / 'taprouter.db'}", "metrics": {"listen": None},
            "routers": {self.router: {
                "dpid": self.dpid,
                "netns": self.router_ns,
                "ports": {1: {"tap": self.taps[1], "addresses": ["10.0.1.1/24"]},
                          2: {"tap": self.taps[2], "addresses": ["10.0.2.1/24"]}},
                # h1 is a (passive, silent) BGP neighbour, so that TCP to port 179 from it is the
                # unmetered peer class the punt stage measures the relay with.
                "bird": {"config": str(self.write_bird())},
            }},
        }
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    def write_bird(self) -> Path:
        path = self.tmp / "bird.conf"
        path.write_text("router id 10.0.1.1;\nprotocol device {}\n"
                        "protocol bgp h1 {\n  local 10.0.1.1 as 65000;\n  neighbor 10.0.1.2 as 65001;\n"
                        "  passive on;\n  ipv4 { import none; export none; };\n}\n")
        return path

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
        wait_until(lambda: "arp_tpa=10.0.1.1" in self.dump_flows(Table.PUNT), 15, "the punt flows")
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
        """n_packets of every CONTROLLER flow in the FIB tables, keyed by its match."""
        result = {}
        for table in (Table.FIB4, Table.FIB6):
            for line in self.dump_flows(table).splitlines():
                if "CONTROLLER" not in line:
                    continue
                n = int(re.search(r"n_packets=(\d+)", line).group(1))
                prio = re.search(r"priority=(\d+)", line)
                match = line.split("priority=")[1].split(" actions=")[0] if prio else "(miss)"
                match = re.sub(r"^\d+,?", "", match) or "table-miss"
                result[f"table {int(table)} prio {prio.group(1) if prio else 0} {match}"] = n
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

    # -- machine load ------------------------------------------------------------------------

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

