"""The netns tests' lab: a real Open vSwitch bridge (userspace datapath), hosts in network
namespaces on veths, and a `taprouter run` daemon driving the bridge (RouterLab), with the
helpers the netns tests share.

Every name a test creates (bridge, veths, host and router netns, TAPs) starts with a
unique prefix and is removed in teardown, even when the test fails; teardown then
checks that nothing with the prefix is left. Only processes the lab started are
ever signalled, by PID.

A module of its own, not conftest.py: `from conftest import ...` finds whichever conftest
pytest imported last (tests/ has one too), so helpers and tests import from here.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, TypeVar

import pytest
import yaml

import ofctl
from taprouter.bridge.holder import pid_alive  # noqa: F401  (re-exported for the tests)
from taprouter.lab import Host, Lab, make_pki

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = REPO / ".venv" / "bin"
TAPROUTER = VENV_BIN / "taprouter"
PYTHON = VENV_BIN / "python"
N_HOSTS = 3
SOCK_PATH_MAX = 100  # sun_path is 108 bytes; keep a margin

T = TypeVar("T")


# --- utilities ------------------------------------------------------------------------------

def wait_until(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.1,
               message: str | Callable[[], str] | None = None) -> T:
    """Poll `predicate` until it returns something truthy, and return that; raise on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise TimeoutError(f"not true within {timeout:g} s: {text or predicate}")
        time.sleep(interval)


def run(*cmd: str, netns: str | None = None, check: bool = True, timeout: float = 30,
        env: dict | None = None) -> subprocess.CompletedProcess:
    full = (["ip", "netns", "exec", netns] if netns else []) + [str(c) for c in cmd]
    proc = subprocess.run(full, capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(full)} exited {proc.returncode}\n"
                             f"stdout: {proc.stdout.strip()}\nstderr: {proc.stderr.strip()}")
    return proc


def netns_list() -> list[str]:
    out = run("ip", "netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def root_links() -> list[str]:
    out = run("ip", "-o", "link", "show", check=False).stdout
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line]


def bridges() -> list[str]:
    return run("ovs-vsctl", "list-br", check=False).stdout.split()


def leftovers(prefix: str) -> list[str]:
    found = [f"netns {n}" for n in netns_list() if n.startswith(prefix)]
    found += [f"bridge {b}" for b in bridges() if b.startswith(prefix)]
    found += [f"link {link}" for link in root_links() if link.startswith(prefix)]
    return found


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unique_prefix() -> str:
    for _ in range(100):
        prefix = "t" + secrets.token_hex(2)
        if not leftovers(prefix):
            return prefix
    raise RuntimeError("no free test prefix found")


def host_python(host: Host, code: str, timeout: float = 60) -> str:
    """Run Python (with scapy available) inside a host's netns; returns its stdout."""
    return run(PYTHON, "-c", code, netns=host.name, timeout=timeout).stdout


# --- the lab with a router ------------------------------------------------------------------

class RouterLab:
    """One OVS bridge, hosts h1..h3 on ports 1..3, and a taprouter daemon for the bridge."""

    def __init__(self, tmp_path: Path, tls: bool = False):
        self.prefix = unique_prefix()
        self.tmp_path = tmp_path
        self.controller_port = free_tcp_port()
        self.dpid = 0x7A0000 | int(self.prefix[1:], 16)
        # Over TLS: a throwaway CA signed the daemon's and the switch's certificates.
        self.pki = make_pki(tmp_path / "pki") if tls else None
        self.lab = Lab(self.prefix, self.controller_port, dpid=self.dpid, pki=self.pki)
        self.router = f"{self.prefix}r"
        self.netns = f"{self.prefix}r"
        self.taps = {n: f"{self.prefix}p{n}" for n in range(1, N_HOSTS + 1)}
        self.config_path = tmp_path / "taprouter.yaml"
        self.log_path = tmp_path / "daemon.log"
        self.run_dir = tmp_path / "run"
        self._own_run_dir = False
        if len(str(self.run_dir / self.router / "holder.sock")) > SOCK_PATH_MAX:
            # A Unix socket path must fit in 108 bytes; deep pytest temp dirs may not.
            self.run_dir = Path(tempfile.mkdtemp(prefix=f"{self.prefix}-run-"))
            self._own_run_dir = True
        self.env = {**os.environ, "TAPROUTER_RUN_DIR": str(self.run_dir)}
        self.proc: subprocess.Popen | None = None
        self._log_offset = 0
        self._holder_pids: set[int] = set()

    # -- building ---------------------------------------------------------------------------

    @property
    def hosts(self) -> list[Host]:
        return self.lab.hosts

    def host(self, port: int) -> Host:
        return next(h for h in self.lab.hosts if h.port == port)

    @property
    def bridge(self) -> str:
        return self.lab.bridge

    @property
    def router_dir(self) -> Path:
        return self.run_dir / self.router

    def build(self) -> None:
        self.lab.up()
        for n in range(1, N_HOSTS + 1):
            self.lab.add_host(f"h{n}", n, f"10.0.{n}.2/24", f"2001:db8:{n}::2/64",
                              gateway4=f"10.0.{n}.1", gateway6=f"2001:db8:{n}::1")
        # The daemon's database and /metrics are the test's own: never the host's.
        self.metrics_port = free_tcp_port()
        config = {
            "openflow": self.lab.openflow_config(),
            "database": f"sqlite:///{self.tmp_path / 'taprouter.db'}",
            "metrics": {"listen": f"127.0.0.1:{self.metrics_port}"},
            "routers": {self.router: {
                "dpid": self.dpid,
                "netns": self.netns,
                "ports": {n: {"tap": self.taps[n],
                              "addresses": [f"10.0.{n}.1/24", f"2001:db8:{n}::1/64"]}
                          for n in range(1, N_HOSTS + 1)},
            }},
        }
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    # -- the daemon -------------------------------------------------------------------------

    def start(self, timeout: float = 30, wait: bool = True) -> subprocess.Popen:
        """Start `taprouter -v run` and wait until it has reconciled the punt flows (unless
        not `wait`)."""
        assert self.proc is None or self.proc.poll() is not None, "daemon already running"
        with open(self.log_path, "ab") as log:
            log.write(f"===== test: starting taprouter daemon at {time.strftime('%H:%M:%S')} =====\n"
                      .encode())
            log.flush()
            self._log_offset = log.tell()
            self.proc = subprocess.Popen(
                [str(TAPROUTER), "-v", "run", "-c", str(self.config_path)], cwd=REPO, env=self.env,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        if not wait:
            return self.proc
        self.wait_log(r"reconciled \d+ flows", timeout=timeout)
        wait_until(self.punt_flows_installed, timeout=timeout,
                   message=lambda: "punt flows on the switch:\n" + self.dump_flows())
        self._remember_holder()
        return self.proc

    def daemon_alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> int | None:
        """Signal the daemon this fixture started (by PID) and wait for it; returns its exit code."""
        if self.proc is None:
            return None
        self._remember_holder()
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"daemon pid {self.proc.pid} did not exit within {timeout} s "
                                 f"of {signal.Signals(sig).name}") from None

    def kill(self) -> int | None:
        return self.stop(signal.SIGKILL)

    def restart(self, sig: int = signal.SIGTERM) -> subprocess.Popen:
        self.stop(sig)
        return self.start()

    # -- the daemon's log -------------------------------------------------------------------

    def log_text(self, since: int = 0) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(since)
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def log_since_start(self) -> str:
        """The log of the daemon started last."""
        return self.log_text(self._log_offset)

    def wait_log(self, pattern: str, timeout: float = 20, since: int | None = None) -> re.Match:
        """Wait until the current daemon's log matches `pattern`; fail early if the daemon dies."""
        start = self._log_offset if since is None else since
        regex = re.compile(pattern)

        def check():
            found = regex.search(self.log_text(start))
            if found:
                return found
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"daemon exited with {self.proc.returncode} before logging "
                                     f"{pattern!r}; log:\n{self.log_text(start)}")
            return None

        return wait_until(check, timeout=timeout, message=lambda: f"log line matching {pattern!r}; "
                          f"log so far:\n{self.log_text(start)[-6000:]}")

    # -- switch and router state ------------------------------------------------------------

    def dump_flows(self, table: int | None = None) -> str:
        """The switch's flows as ovs-ofctl prints them (for messages); "" if it cannot say."""
        return ofctl.dump_flows(self.bridge, table, check=False)

    def flows(self, table: int | None = None) -> list[ofctl.Flow]:
        return ofctl.parse_flows(self.dump_flows(table))

    def groups(self) -> dict[int, ofctl.Group]:
        return ofctl.groups(self.bridge)

    def punt_flows_installed(self) -> bool:
        return self.punt_flows_for(self.taps)

    def punt_flows_for(self, ports) -> bool:
        """Flows for each port's in_port and ARP for its address, and flows to the controller."""
        flows = self.flows()
        return all(any(f.match.get("arp_tpa") == f"10.0.{n}.1" for f in flows)
                   and any(f.match.get("in_port") == str(n) for f in flows)
                   for n in ports) and any("CONTROLLER" in f.actions for f in flows)

    def switch_mac(self, port: int) -> str:
        return run("ovs-vsctl", "get", "interface", self.lab.switch_veth(port),
                   "mac_in_use").stdout.strip().strip('"').lower()

    def in_router(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        return run(*cmd, netns=self.netns, check=check)

    def tap_link(self, port: int) -> dict:
        """`ip -j link show` of a TAP in the router netns."""
        return json.loads(self.in_router("ip", "-j", "link", "show", self.taps[port]).stdout)[0]

    def router_neighbours(self) -> list[dict]:
        return json.loads(self.in_router("ip", "-j", "neigh", "show").stdout or "[]")

    def daemon_status(self) -> dict | None:
        """The daemon's own status file ($TAPROUTER_RUN_DIR/<router>/status.json)."""
        try:
            return json.loads((self.router_dir / "status.json").read_text())
        except (OSError, ValueError):
            return None

    def fresh_daemon_status(self, timeout: float = 5) -> dict:
        """The daemon's status file, once it has been written after this call (every 1 s)."""
        now = time.time()
        return wait_until(lambda: (s := self.daemon_status()) and s["time"] > now and s, timeout=timeout,
                          message="a status file newer than the call")

    # -- the command line with the same environment -----------------------------------------

    def taprouter(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        return run(TAPROUTER, *args, env=self.env, check=check, timeout=timeout)

    def down(self, check: bool = True) -> subprocess.CompletedProcess:
        return self.taprouter("down", "-c", str(self.config_path), check=check)

    def status(self) -> dict:
        # Exit 1 says a router is unhealthy (no daemon, no switch, BIRD down): the JSON says which.
        result = self.taprouter("status", "-c", str(self.config_path), "--json", check=False)
        assert result.returncode in (0, 1), f"status exited {result.returncode}: {result.stderr}"
        out = result.stdout
        (entry,) = [r for r in json.loads(out) if r["router"] == self.router]
        return entry

    # -- hosts ------------------------------------------------------------------------------

    @staticmethod
    def ping(host: Host, address: str, count: int = 3, deadline: float | None = 10,
             extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
        """Ping from a host.

        With a deadline, ping succeeds only if all `count` replies come back within it
        (ping keeps sending until then); without, it sends exactly `count` requests and
        waits 1 s for each reply.
        """
        timing = ("-w", str(deadline)) if deadline else ("-W", "1")
        return run("ping", "-n", "-c", str(count), "-i", "0.2", *timing, *extra, address,
                   netns=host.name, check=False, timeout=(deadline or count) + 10)

    def assert_ping(self, host: Host, address: str, **kwargs) -> None:
        result = self.ping(host, address, **kwargs)
        assert result.returncode == 0, (f"ping {host.name} -> {address} failed ({result.returncode}):\n"
                                        f"{result.stdout}{result.stderr}")

    @staticmethod
    def host_mac(host: Host) -> str:
        return json.loads(host.run("ip", "-j", "link", "show", "eth0"))[0]["address"].lower()

    wait_until = staticmethod(wait_until)
    host_python = staticmethod(host_python)
    pid_alive = staticmethod(pid_alive)
    netns_list = staticmethod(netns_list)
    root_links = staticmethod(root_links)

    # -- teardown ---------------------------------------------------------------------------

    def _remember_holder(self) -> None:
        try:
            self._holder_pids.add(int((self.router_dir / "holder.pid").read_text()))
        except (OSError, ValueError):
            pass

    def _holder_is_ours(self, pid: int) -> bool:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            return False
        return "taprouter.bridge.holder" in cmdline and str(self.router_dir) in cmdline

    def teardown(self) -> list[str]:
        """Remove everything; returns the problems found (never raises)."""
        problems: list[str] = []
        self._remember_holder()
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.stop(signal.SIGTERM, timeout=10)
            except AssertionError as exc:
                problems.append(str(exc))
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        if self.config_path.exists():
            try:
                result = self.down(check=False)
                if result.returncode != 0:
                    problems.append(f"taprouter down exited {result.returncode}: {result.stderr.strip()}")
            except subprocess.TimeoutExpired:
                problems.append("taprouter down timed out")
        # The holder is a child of a daemon this fixture started; if `down` could not stop it,
        # stop it by PID (and only if its command line names our own run directory).
        for pid in self._holder_pids:
            if pid_alive(pid) and self._holder_is_ours(pid):
                problems.append(f"TAP holder pid {pid} survived `taprouter down`; killed it")
                os.kill(pid, signal.SIGKILL)
        try:
            self.lab.down()
        except Exception as exc:  # noqa: BLE001 - teardown must go on
            problems.append(f"lab.down() failed: {exc}")
        if self.netns in netns_list():
            problems.append(f"router netns {self.netns} survived `taprouter down`")
            run("ip", "netns", "del", self.netns, check=False)
        if self._own_run_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)
        left = leftovers(self.prefix)
        if left:
            problems.append(f"left behind with prefix {self.prefix!r}: {', '.join(left)}")
        return problems


def running_lab(request, lab: RouterLab, what: str):
    """Fixture body for any RouterLab: build, start, yield; tear down always, and fail on leftovers."""
    request.node._router_lab = lab  # for the report hook in conftest.py
    problems: list[str] = []
    try:
        lab.build()
        lab.start()
        yield lab
    finally:
        problems = lab.teardown()
        if problems:
            print(f"{what} teardown problems:\n  " + "\n  ".join(problems), file=sys.stderr)
    if problems:
        pytest.fail(f"{what} teardown: " + "; ".join(problems), pytrace=False)
