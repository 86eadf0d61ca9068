"""Many datapaths on one daemon: N Open vSwitch bridges (userspace datapath), each its own router
in its own netns running BIRD, with two hosts each, all driven by ONE `taprouter run`.

Router i (0-based) is named PREFIX<i>r; its hosts h1 and h2 sit on ports 1 and 2 with
10.<i+1>.1.2/24 and 10.<i+1>.2.2/24, so every router routes its own, distinct addresses.
Every name starts with the lab's prefix; teardown removes them all, stops only the processes
the lab started (by PID, after checking their command line names our run directory), and
reports anything left behind. Used by netns_tests/test_many_datapaths.py and
benchmarks/datapaths.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

import ofctl
from routerlab import (REPO, SOCK_PATH_MAX, TAPROUTER, free_tcp_port, leftovers, netns_list, pid_alive, run,
                      unique_prefix, wait_until)
from taprouter.lab import Host, Lab

ICMP_SEQ = re.compile(r"icmp_seq=(\d+)")


@dataclass(frozen=True)
class PingTally:
    """What one long-running ping saw: replies by sequence number, up to the last reply."""

    sent: int  # sequence numbers 1..sent went out
    received: frozenset[int]

    @property
    def last(self) -> int:
        return max(self.received, default=0)

    @property
    def lost(self) -> list[int]:
        """Requests with no reply, among those sent before the last reply (later ones may be in flight)."""
        return [seq for seq in range(1, self.last + 1) if seq not in self.received]


def tally(output: str) -> PingTally:
    """Parse `ping -n` output (no -q): one line per reply, `icmp_seq=N`; duplicates count once."""
    received = frozenset(int(m.group(1)) for line in output.splitlines()
                         if "bytes from" in line and (m := ICMP_SEQ.search(line)))
    m = re.search(r"(\d+) packets transmitted", output)
    return PingTally(int(m.group(1)) if m else 0, received)


class Pinger:
    """A ping from h1 to h2 of one router at `rate` pps, running until stopped; output to a file
    (a pipe would fill up and stall ping)."""

    def __init__(self, host: Host, address: str, out: Path, rate: int):
        self.out = out
        with open(out, "wb") as f:
            self.proc = host.popen("ping", "-n", "-i", f"{1 / rate:.3f}", "-W", "1", address,
                                   stdout=f, stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self) -> PingTally:
        """SIGINT (ping prints its statistics), then the tally."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGINT)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        return tally(self.out.read_text(errors="replace"))


class ManyLab:
    """N bridges, N routers with BIRD, 2 hosts each, one daemon."""

    def __init__(self, tmp_path: Path, count: int = 10, bird: bool = True):
        assert count <= 16, "one hex digit per router in the names"
        self.prefix = unique_prefix()
        self.tmp_path = tmp_path
        self.count = count
        self.with_bird = bird
        self.controller_port = free_tcp_port()
        self.metrics_port = free_tcp_port()
        base = int(self.prefix[1:], 16)
        self.labs = [Lab(f"{self.prefix}{i:x}", self.controller_port, dpid=(0x7B << 24) | (base << 4) | i)
                     for i in range(count)]
        self.routers = [f"{lab.prefix}r" for lab in self.labs]
        self.config_path = tmp_path / "taprouter.yaml"
        self.log_path = tmp_path / "daemon.log"
        self.bird_dir = tmp_path / "bird"
        self.run_dir = tmp_path / "run"
        self._own_run_dir = False
        if len(str(self.run_dir / self.routers[0] / "holder.sock")) > SOCK_PATH_MAX:
            self.run_dir = Path(tempfile.mkdtemp(prefix=f"{self.prefix}-run-"))
            self._own_run_dir = True
        self.env = {**os.environ, "TAPROUTER_RUN_DIR": str(self.run_dir)}
        self.proc: subprocess.Popen | None = None
        self._log_offset = 0
        self._pids: set[int] = set()  # holders and BIRDs seen, for the teardown's check

    # -- names ------------------------------------------------------------------------------

    def h1(self, i: int) -> Host:
        return self.labs[i].hosts[0]

    @staticmethod
    def h2_address(i: int) -> str:
        return f"10.{i + 1}.2.2"

    def bird_config(self, i: int) -> Path:
        return self.bird_dir / f"{self.routers[i]}.conf"

    def router_dir(self, i: int) -> Path:
        return self.run_dir / self.routers[i]

    # -- building ---------------------------------------------------------------------------

    def build(self) -> None:
        routers = {}
        for i, lab in enumerate(self.labs):
            lab.up()
            for port in (1, 2):
                lab.add_host(f"h{port}", port, f"10.{i + 1}.{port}.2/24", gateway4=f"10.{i + 1}.{port}.1")
            routers[self.routers[i]] = {
                "dpid": lab.dpid, "netns": self.routers[i],
                "ports": {port: {"tap": f"{lab.prefix}p{port}", "addresses": [f"10.{i + 1}.{port}.1/24"]}
                          for port in (1, 2)}}
        config = {"openflow": {"listen": f"127.0.0.1:{self.controller_port}"},
                  "database": f"sqlite:///{self.tmp_path / 'taprouter.db'}",
                  "metrics": {"listen": f"127.0.0.1:{self.metrics_port}"},
                  "routers": routers}
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        if self.with_bird:
            self.bird_dir.mkdir(parents=True, exist_ok=True)
            for i, name in enumerate(self.routers):
                starter = self.taprouter("bird-config", "-c", str(self.config_path), "--router", name,
                                         "--ospf-hello", "1").stdout
                self.bird_config(i).write_text(starter + "\nlog stderr all;\n")
                config["routers"][name]["bird"] = {"config": str(self.bird_config(i))}
            self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    # -- the daemon -------------------------------------------------------------------------

    def start(self, timeout: float = 60) -> float:
        """Start the daemon; wait until every router reconciled, has its punt flows and (with BIRD)
        a BIRD answering. Returns the seconds that took."""
        assert self.proc is None or self.proc.poll() is not None, "daemon already running"
        started = time.monotonic()
        with open(self.log_path, "ab") as log:
            log.write(f"===== test: starting taprouter daemon at {time.strftime('%H:%M:%S')} =====\n".encode())
            log.flush()
            self._log_offset = log.tell()
            self.proc = subprocess.Popen([str(TAPROUTER), "run", "-c", str(self.config_path)], cwd=REPO,
                                         env=self.env, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        for i, name in enumerate(self.routers):
            self.wait_log(rf"router {re.escape(name)}: reconciled \d+ flows", timeout=timeout)
            wait_until(lambda: self.punt_flows_installed(i), timeout=timeout,
                       message=lambda: f"punt flows on {self.labs[i].bridge}:\n{self.dump_flows(i)}")
        if self.with_bird:
            wait_until(lambda: all(self.bird_pids().values()), timeout=timeout, interval=0.3,
                       message=lambda: f"BIRD running for every router: {self.bird_pids()}")
        self._remember_pids()
        return time.monotonic() - started

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int | None:
        if self.proc is None:
            return None
        self._remember_pids()
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"daemon pid {self.proc.pid} did not exit within {timeout} s") from None

    def daemon_alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self, since: int = 0) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(since)
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def log_size(self) -> int:
        return self.log_path.stat().st_size

    def wait_log(self, pattern: str, timeout: float = 20, since: int | None = None) -> re.Match:
        start = self._log_offset if since is None else since
        regex = re.compile(pattern)

        def check():
            found = regex.search(self.log_text(start))
            if not found and not self.daemon_alive():
                raise AssertionError(f"daemon exited before logging {pattern!r}:\n{self.log_text(start)[-6000:]}")
            return found
        return wait_until(check, timeout=timeout,
                          message=lambda: f"log matching {pattern!r}:\n{self.log_text(start)[-6000:]}")

    def taprouter(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        return run(TAPROUTER, *args, env=self.env, check=check, timeout=timeout)

    def status(self) -> dict[str, dict]:
        result = self.taprouter("status", "-c", str(self.config_path), "--json", check=False)
        assert result.returncode in (0, 1), f"status exited {result.returncode}: {result.stderr}"
        return {entry["router"]: entry for entry in json.loads(result.stdout)}

    def bird_pids(self) -> dict[str, int | None]:
        """Each router's BIRD pid, if it runs and answers (status --json)."""
        out = {}
        for name, entry in self.status().items():
            bird = entry.get("bird") or {}
            ok = bird.get("pid") and bird.get("protocols") and not bird.get("error")
            out[name] = bird["pid"] if ok else None
        return out

    # -- switches ---------------------------------------------------------------------------

    def dump_flows(self, i: int, table: int | None = None) -> str:
        return ofctl.dump_flows(self.labs[i].bridge, table, check=False)

    def punt_flows_installed(self, i: int) -> bool:
        flows = ofctl.parse_flows(self.dump_flows(i))
        return all(any(f.match.get("arp_tpa") == f"10.{i + 1}.{port}.1" for f in flows) for port in (1, 2)) \
            and any("CONTROLLER" in f.actions for f in flows)

    def disconnect(self, i: int) -> None:
        """`ovs-vsctl del-controller`: the switch drops its connection (and, even in fail-mode
        secure, its flows)."""
        run("ovs-vsctl", "del-controller", self.labs[i].bridge)

    def reconnect(self, i: int) -> None:
        lab = self.labs[i]
        run("ovs-vsctl", "set-controller", lab.bridge, f"tcp:127.0.0.1:{self.controller_port}")
        run("ovs-vsctl", "set", "controller", lab.bridge, "max_backoff=1000", "inactivity_probe=5000")

    # -- hosts ------------------------------------------------------------------------------

    def ping_once(self, i: int, count: int = 3) -> subprocess.CompletedProcess:
        return run("ping", "-n", "-c", str(count), "-i", "0.2", "-w", "10", self.h2_address(i),
                   netns=self.h1(i).name, check=False, timeout=20)

    def pinger(self, i: int, rate: int) -> Pinger:
        return Pinger(self.h1(i), self.h2_address(i), self.tmp_path / f"ping-{i}-{time.monotonic_ns()}.txt", rate)

    def pin_neighbours(self, i: int) -> None:
        """Make the router's neighbour entries for its hosts permanent (see test_hitless_restart:
        while no daemon relays frames, a neighbour the kernel happens to probe fails; that is the
        kernel changing, not the restart)."""
        name = self.routers[i]
        entries = json.loads(run("ip", "-j", "neigh", "show", netns=name).stdout or "[]")
        for e in entries:
            if e.get("lladdr") and e.get("dst", "").startswith(f"10.{i + 1}."):
                run("ip", "neigh", "replace", e["dst"], "dev", e["dev"], "lladdr", e["lladdr"], "nud", "permanent",
                    netns=name)

    wait_until = staticmethod(wait_until)

    # -- teardown ---------------------------------------------------------------------------

    def _remember_pids(self) -> None:
        for i in range(self.count):
            for name in ("holder.pid", "bird.pid"):
                try:
                    self._pids.add(int((self.router_dir(i) / name).read_text().split()[0]))
                except (OSError, ValueError, IndexError):
                    pass

    def _ours(self, pid: int) -> bool:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False
        return str(self.run_dir).encode() in cmdline or str(self.bird_dir).encode() in cmdline

    def teardown(self) -> list[str]:
        """Remove everything; returns the problems found (never raises)."""
        problems: list[str] = []
        self._remember_pids()
        if self.daemon_alive():
            try:
                self.stop()
            except AssertionError as exc:
                problems.append(str(exc))
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        if self.config_path.exists():
            try:
                result = self.taprouter("down", "-c", str(self.config_path), check=False, timeout=120)
                if result.returncode != 0:
                    problems.append(f"taprouter down exited {result.returncode}: {result.stderr.strip()}")
            except subprocess.TimeoutExpired:
                problems.append("taprouter down timed out")
        for pid in sorted(self._pids):
            if pid_alive(pid) and self._ours(pid):
                problems.append(f"pid {pid} ({Path(f'/proc/{pid}/comm').read_text().strip()}) survived "
                                "`taprouter down`; killed it")
                os.kill(pid, signal.SIGKILL)
        for lab in self.labs:
            try:
                lab.down()
            except Exception as exc:  # noqa: BLE001 - teardown must go on
                problems.append(f"lab.down() failed: {exc}")
        for name in self.routers:
            if name in netns_list():
                problems.append(f"router netns {name} survived `taprouter down`")
                run("ip", "netns", "del", name, check=False)
        if self._own_run_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)
        left = leftovers(self.prefix)
        if left:
            problems.append(f"left behind with prefix {self.prefix!r}: {', '.join(left)}")
        return problems
