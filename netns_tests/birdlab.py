"""BIRD in the lab: a RouterLab whose router runs BIRD, and peer BIRDs in the hosts' netns.

The router's BIRD file is `taprouter bird-config --ospf-hello 1` (device, direct, kernel
export, OSPF on every TAP) plus whatever a test appends, e.g. a BGP session to the peer on
port 3. Peer BIRDs run in the hosts' netns (`ip netns exec H bird -f`), are tracked by PID
and stopped before the lab itself is torn down. Teardown then checks, by PID and by our own
run-directory paths, that no BIRD of ours survived.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import yaml

import ofctl
from routerlab import RouterLab, pid_alive, run, running_lab, wait_until
from taprouter.controller.openflow.pipeline import Table
from taprouter.lab import Host

ROUTER_AS = 65000
FIB4 = int(Table.FIB4)
FIB_PRIORITY_BASE = 10  # a FIB entry's priority is 10 + its prefix length

# Short BGP timers so that sessions come up and recover in seconds, not minutes
# (BIRD's defaults: connect delay 5 s, connect retry 120 s, error wait 60..300 s).
BGP_TIMERS = "connect delay time 1; connect retry time 2; error wait time 1, 2;"


# --- BIRD config text ------------------------------------------------------------------------

def _timers(hold: int, keepalive: int | None) -> str:
    return f"hold time {hold}; " + (f"keepalive time {keepalive}; " if keepalive else "") + BGP_TIMERS


def router_bgp(peer_port: int = 3, peer_as: int = 65003, hold: int = 6, keepalive: int | None = None,
               name: str = "peer3") -> str:
    """The router's side of an eBGP session with the host on `peer_port` (10.0.N.2)."""
    return (f"protocol bgp {name} {{\n"
            f"  local 10.0.{peer_port}.1 as {ROUTER_AS};\n"
            f"  neighbor 10.0.{peer_port}.2 as {peer_as};\n"
            f"  {_timers(hold, keepalive)}\n"
            f"  ipv4 {{ import all; export none; }};\n"
            f"}}\n")


def hold_timer(show_protocols_all: str) -> tuple[float, int]:
    """(seconds left, hold time) of the BGP session in a `birdc show protocols all NAME`."""
    match = re.search(r"Hold timer:\s+([\d.]+)/(\d+)", show_protocols_all)
    assert match, f"no hold timer in:\n{show_protocols_all}"
    return float(match.group(1)), int(match.group(2))


def static_protocol(name: str, routes: Sequence[str], disabled: bool = False) -> str:
    lines = [f"protocol static {name} {{", "  ipv4;", *(["  disabled;"] if disabled else [])]
    lines += [f"  route {r} unreachable;" for r in routes]
    return "\n".join(lines) + "\n}\n"


@dataclass(frozen=True)
class PeerSpec:
    """A neighbouring router in host h<port>: its BIRD config and the addresses on its lo."""

    port: int
    config: str
    lo_addresses: tuple[str, ...] = ()
    start_timeout: float = 10.0  # a peer holding a full table in its config parses it for longer


def bgp_peer(port: int = 3, asn: int = 65003, routes: Sequence[str] = (), hold: int = 6,
             keepalive: int | None = None, lo_addresses: Sequence[str] = (), extra: str = "") -> PeerSpec:
    """An eBGP peer announcing `routes` from the static protocol `announced`."""
    config = (f"router id 10.0.{port}.2;\n"
              "protocol device { scan time 10; }\n"
              + static_protocol("announced", routes)
              + extra
              + f"protocol bgp taprouter {{\n"
                f"  local 10.0.{port}.2 as {asn};\n"
                f"  neighbor 10.0.{port}.1 as {ROUTER_AS};\n"
                f"  {_timers(hold, keepalive)}\n"
                f"  ipv4 {{ import none; export where source = RTS_STATIC; }};\n"
                f"}}\n")
    return PeerSpec(port, config, tuple(lo_addresses))


def ospf_peer(port: int = 2, stub: str = "10.20.0.1/24", hello: int = 1) -> PeerSpec:
    """An OSPFv2 neighbour on eth0 (area 0) with a stub network on its lo."""
    config = (f"router id 10.0.{port}.2;\n"
              "protocol device { scan time 10; }\n"
              "protocol ospf v2 ospf4 {\n"
              "  ipv4 { import all; export none; };\n"
              "  area 0 {\n"
              f'    interface "eth0" {{ hello {hello}; dead {hello * 4}; wait {hello * 4}; }};\n'
              '    interface "lo" { stub; };\n'
              "  };\n"
              "}\n")
    return PeerSpec(port, config, (stub,))


# --- a peer BIRD -------------------------------------------------------------------------------

@dataclass
class PeerBird:
    host: Host
    config: Path
    socket: Path
    log: Path
    proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 10.0) -> None:
        with open(self.log, "ab") as log:
            # `ip netns exec` execs BIRD (no fork), so the Popen's pid is BIRD's own.
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.host.name, "bird", "-f", "-c", str(self.config),
                 "-s", str(self.socket)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_until(self._ready, timeout=timeout, message=lambda: f"peer BIRD in {self.host.name} answering on "
                   f"{self.socket}; its log:\n{self.log_text()}")

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"peer BIRD in {self.host.name} exited with {self.proc.returncode}:\n"
                                 f"{self.log_text()}")
        return self.birdc("show status", check=False).returncode == 0

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def birdc(self, *command: str, check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess:
        return run("birdc", "-s", str(self.socket), *" ".join(command).split(), check=check, timeout=timeout)

    def reconfigure(self, text: str) -> None:
        """Write a new config and `birdc configure` it (BIRD keeps what did not change)."""
        self.config.write_text(text)
        out = self.birdc("configure").stdout
        assert "Reconfigured" in out or "Reconfiguration in progress" in out, out

    def signal(self, sig: int) -> None:
        assert self.alive(), f"peer BIRD pid {self.pid} is not running"
        os.kill(self.pid, sig)

    def stop(self, timeout: float = 5) -> list[str]:
        """Stop it by PID (SIGTERM, then SIGKILL); returns problems, never raises."""
        if self.proc is None:
            return []
        problems = []
        if self.proc.poll() is None:
            try:
                os.kill(self.pid, signal.SIGCONT)  # a test may have frozen it
                os.kill(self.pid, signal.SIGTERM)
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                problems.append(f"peer BIRD pid {self.pid} ignored SIGTERM; killed it")
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait(timeout=timeout)
            except ProcessLookupError:
                pass
        if pid_alive(self.pid):
            problems.append(f"peer BIRD pid {self.pid} survived")
        return problems

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""


# --- the lab ---------------------------------------------------------------------------------

class BirdLab(RouterLab):
    """RouterLab whose router runs BIRD (the starter config plus `router_extra`), with peers."""

    def __init__(self, tmp_path: Path, peers: Sequence[PeerSpec] = (), router_extra: str = "",
                 ospf_hello: int = 1):
        super().__init__(tmp_path)
        self.peer_specs = list(peers)
        self.router_extra = router_extra
        self.ospf_hello = ospf_hello
        self.bird_dir = tmp_path / "bird"
        self.bird_config = self.bird_dir / "router.conf"
        self.starter = ""
        self.peers: dict[int, PeerBird] = {}
        self._router_bird_pids: set[int] = set()

    # -- building ---------------------------------------------------------------------------

    def build(self) -> None:
        super().build()  # writes the YAML without a `bird` key, so bird-config can read it
        self.bird_dir.mkdir(parents=True, exist_ok=True)
        self.starter = self.taprouter("bird-config", "-c", str(self.config_path),
                                      "--ospf-hello", str(self.ospf_hello)).stdout
        self.write_router_bird(self.router_extra)
        config = yaml.safe_load(self.config_path.read_text())
        config["routers"][self.router]["bird"] = {"config": str(self.bird_config)}
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        for spec in self.peer_specs:
            self.start_peer(spec)

    def router_bird_text(self, extra: str = "") -> str:
        # BIRD logs to stderr, which taprouter sends to bird.log in the router's run directory.
        return self.starter + "\n# Added by the netns tests.\nlog stderr all;\n" + extra

    def write_router_bird(self, extra: str = "") -> None:
        self.bird_config.write_text(self.router_bird_text(extra))

    def start_peer(self, spec: PeerSpec) -> PeerBird:
        host = self.host(spec.port)
        for address in spec.lo_addresses:
            host.run("ip", "addr", "add", address, "dev", "lo")
        peer = PeerBird(host, self.bird_dir / f"peer{spec.port}.conf",
                        self.run_dir / f"{host.name}.ctl",  # short: a Unix socket path
                        self.bird_dir / f"peer{spec.port}.log")
        peer.socket.parent.mkdir(parents=True, exist_ok=True)
        peer.config.write_text("log stderr all;\n" + spec.config)
        self.peers[spec.port] = peer
        peer.start(spec.start_timeout)
        return peer

    def peer(self, port: int) -> PeerBird:
        return self.peers[port]

    def start(self, timeout: float = 30) -> subprocess.Popen:
        proc = super().start(timeout)
        self.wait_router_bird()
        return proc

    # -- the router's BIRD ------------------------------------------------------------------

    @property
    def router_bird_socket(self) -> Path:
        return self.router_dir / "bird.ctl"

    @property
    def router_bird_log(self) -> Path:
        return self.router_dir / "bird.log"

    def bird(self) -> dict:
        """The `bird` object of `taprouter status --json`."""
        bird = self.status()["bird"]
        assert bird is not None, "status has no bird object for a router with a bird config"
        if bird.get("pid"):
            self._router_bird_pids.add(bird["pid"])
        return bird

    def wait_router_bird(self, timeout: float = 15) -> int:
        """Wait until status shows the router's BIRD running and answering; returns its pid."""
        def ready():
            bird = self.bird()
            return bird["pid"] if bird["pid"] and bird["protocols"] and not bird["error"] else None
        return wait_until(ready, timeout=timeout, interval=0.3, message=self.bird_report)

    def protocol(self, name: str, bird: dict | None = None) -> dict | None:
        bird = bird or self.bird()
        return next((p for p in bird["protocols"] if p["name"] == name), None)

    def wait_protocol(self, name: str, info: str = "Established", timeout: float = 30) -> dict:
        """Wait until the router's BIRD shows protocol `name` up with `info`; returns it."""
        def check():
            p = self.protocol(name)
            return p if p and p["state"] == "up" and p["info"] == info else None
        return wait_until(check, timeout=timeout, interval=0.3, message=self.bird_report)

    def router_birdc(self, *command: str, check: bool = True, timeout: float = 20) -> str:
        return run("birdc", "-s", str(self.router_bird_socket), *" ".join(command).split(),
                   check=check, timeout=timeout).stdout

    def router_bird_pid_file(self) -> int | None:
        try:
            return int((self.router_dir / "bird.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    # -- kernel and switch ------------------------------------------------------------------

    def kernel_route(self, prefix: str) -> dict | None:
        routes = json.loads(self.in_router("ip", "-j", "route", "show", "exact", prefix).stdout or "[]")
        return routes[0] if routes else None

    def fib_flows(self, table: int = FIB4) -> dict[ipaddress.IPv4Network | ipaddress.IPv6Network, ofctl.Flow]:
        """The FIB entries of a table, by destination prefix."""
        return {flow.destination: flow for flow in self.flows(table) if flow.destination is not None}

    def fib_flow(self, prefix: str) -> ofctl.Flow | None:
        return self.fib_flows().get(ipaddress.ip_network(prefix))

    def wait_fib_group_flow(self, prefix: str, timeout: float = 15) -> ofctl.Flow:
        """Wait for a FIB entry for `prefix` whose action is a next-hop group; returns it."""
        prio = FIB_PRIORITY_BASE + ipaddress.ip_network(prefix).prefixlen

        def check():
            flow = self.fib_flow(prefix)
            return flow if flow and flow.group is not None and flow.priority == prio else None
        return wait_until(check, timeout=timeout, message=lambda: f"a FIB entry for {prefix} with a "
                          f"group action (priority {prio}) in table {FIB4}:\n{self.dump_flows(FIB4)}")

    def flow_count(self, table: int = FIB4) -> int:
        return ofctl.aggregate(self.bridge, table).flow_count

    def assert_switched(self, host: Host, address: str, prefix: str, count: int = 5) -> None:
        """`host` pings `address`, and the FIB entry for `prefix` counts the echo requests."""
        before = self.wait_fib_group_flow(prefix).n_packets
        self.assert_ping(host, address, count=count)
        # Open vSwitch pushes datapath statistics to its flows periodically: poll.
        wait_until(lambda: (flow := self.fib_flow(prefix)) is not None and flow.n_packets >= before + count,
                   timeout=5, message=lambda: f"{prefix}'s FIB entry counting {count} more packets than "
                                              f"{before}:\n{self.dump_flows(FIB4)}")

    # -- diagnostics ------------------------------------------------------------------------

    def bird_report(self) -> str:
        """What BIRD, the kernel and the switch say: for failure messages."""
        parts = []
        if self.router_bird_socket.exists():
            try:
                parts.append("router BIRD `show protocols all`:\n"
                             + self.router_birdc("show protocols all", check=False, timeout=3)[-4000:])
            except subprocess.TimeoutExpired:
                parts.append("router BIRD: no answer on its control socket")
        parts.append(f"router bird.log (tail):\n{_tail(self.router_bird_log)}")
        for port, peer in self.peers.items():
            state = f"pid {peer.pid}" + ("" if peer.alive() else " (exited)")
            try:
                shown = peer.birdc("show protocols", check=False, timeout=3).stdout if peer.alive() else ""
            except subprocess.TimeoutExpired:
                shown = "(no answer: frozen?)\n"
            parts.append(f"peer BIRD in {peer.host.name} ({state}) `show protocols`:\n{shown}"
                         f"log (tail):\n{_tail(peer.log)}")
        parts.append("router `ip route`:\n" + self.in_router("ip", "route", check=False).stdout)
        parts.append(f"table {FIB4}:\n" + self.dump_flows(FIB4)[-4000:])
        return "\n".join(parts)

    # -- teardown ---------------------------------------------------------------------------

    def _ours(self, pid: int) -> bool:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        return bool(cmdline) and cmdline[0].endswith(b"bird") and any(
            str(self.run_dir).encode() in arg or str(self.bird_dir).encode() in arg for arg in cmdline)

    def _our_birds(self) -> set[int]:
        """Live BIRDs whose command line names our run directory or config directory."""
        return {int(p) for p in os.listdir("/proc") if p.isdigit() and self._ours(int(p))}

    def teardown(self) -> list[str]:
        problems = []
        for peer in self.peers.values():  # before the lab: their netns go with it
            problems += peer.stop()
        pid = self.router_bird_pid_file()
        if pid:
            self._router_bird_pids.add(pid)
        problems += super().teardown()
        for pid in sorted(self._router_bird_pids | self._our_birds()):
            if pid_alive(pid) and self._ours(pid):
                problems.append(f"BIRD pid {pid} survived the teardown; killed it")
                os.kill(pid, signal.SIGKILL)
        return problems


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(none)"


def bird_lab(request, tmp_path: Path, **options) -> Iterator[BirdLab]:
    """Fixture body: `yield from bird_lab(request, tmp_path, peers=..., router_extra=...)`."""
    yield from running_lab(request, BirdLab(tmp_path, **options), "bird lab")


@dataclass
class Stopwatch:
    """Seconds since it was made; for printing how long convergence took (never asserted)."""

    start: float = field(default_factory=time.monotonic)

    def __call__(self) -> float:
        return time.monotonic() - self.start


def same_instant(a: str, b: str) -> bool:
    """Whether two of BIRD's HH:MM:SS.mmm times are the same event.

    BIRD keeps such an instant on a monotonic clock and prints it as wall time, so the same
    instant can come out a millisecond apart; a session that went down and up again moves it
    by seconds.
    """
    def seconds(clock: str) -> float:
        hours, minutes, secs = clock.split(":")
        return int(hours) * 3600 + int(minutes) * 60 + float(secs)

    return abs(seconds(a) - seconds(b)) < 0.5
