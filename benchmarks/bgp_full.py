#!/usr/bin/env python3
"""A full table over a real BGP session, end to end: peer BIRD -> router BIRD -> kernel -> switch.

Builds its own lab with the netns tests' fixtures (netns_tests/birdlab.py): an Open vSwitch bridge,
hosts h1..h3, `taprouter run` with BIRD in the router netns, and a peer BIRD in h3 (eBGP, AS 65003,
IPv4 and IPv6 channels on one session) whose static protocols hold BENCH_ROUTES IPv4 /24s and 22%
as many IPv6 /48s (the global table's mix, benchmarks/fulltable.py), generated as config lines.
The peer's session starts disabled, so BIRD has parsed the table before any clock starts.

  announce:  `birdc enable` on the peer. From the router's session Established until (a) the
             router's kernel holds every prefix (the part taprouter cannot speed up) and (b) both
             FIB tables hold a flow for every prefix.
  withdraw:  `birdc disable` on the peer: its session ends with a Cease, which BIRD never treats as
             a graceful restart, so the router drops every route at once. From the command until
             the kernel holds none of them, against the switch.
  kill -9:   the router's BIRD killed with the table in place, while h1 pings a host inside the
             first announced prefix (on h3) at 1000 pps; h3 counts the echo requests it receives
             (its kernel's Icmp InEchos). The supervisor restarts BIRD in graceful restart recovery.
             Reports the loss, the lowest kernel and switch counts seen, and the times until BGP
             has relearnt the table and BIRD's recovery is done.

After each stage, off the clock, every route flow on the switch is checked against the kernel's
routes (benchmarks/routes.py's compare). The kernel is watched with a netlink listener in the router netns (subscribe, then dump), so no
polling walks a million routes; the switch with table statistics (benchmarks/flowprobe.py).
Writes benchmarks/bgp_full.json (BENCH_BGP_OUT). Usage: BENCH_ROUTES=10000 .venv/bin/python
benchmarks/bgp_full.py. Everything it creates is named with a unique prefix and removed at the end,
even on failure; it signals only processes it started.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "netns_tests"))
sys.path.insert(0, str(ROOT))

import birdlab  # noqa: E402
from conftest import run  # noqa: E402

from benchmarks import fulltable, steal  # noqa: E402
from benchmarks.flowprobe import FlowProbe  # noqa: E402
from benchmarks.inject import prefixes  # noqa: E402
from benchmarks.routes import compare, cpu_seconds, ovs_pid  # noqa: E402
from taprouter import netns  # noqa: E402
from taprouter.controller.openflow.pipeline import Table  # noqa: E402
from taprouter.routing import recvmany, rtshape  # noqa: E402
from taprouter.routing.netlink import dump_routes  # noqa: E402

OUT = Path(os.environ.get("BENCH_BGP_OUT", ROOT / "benchmarks" / "bgp_full.json"))
TIMEOUT = float(os.environ.get("BENCH_TIMEOUT", "900"))
BASE4 = "20.0.0.0"
TARGET = "20.0.0.1"  # on h3's lo: inside the first announced /24, routed across the switch
HOLD = 240  # a full table keeps both BIRDs busy for seconds; no keepalive may be missed meanwhile
POLL = 0.005  # between questions to the switch: one table-stats round trip each
RTMGRP_IPV4_ROUTE, RTMGRP_IPV6_ROUTE = 0x40, 0x400
NETLINK_ROUTE = 0
PING_INTERVAL = 0.001


# --- BIRD config text (pure) -----------------------------------------------------------------

def static_routes(name: str, channel: str, nets) -> str:
    lines = [f"protocol static {name} {{", f"  {channel};"]
    lines += [f"  route {net} unreachable;" for net in nets]
    return "\n".join(lines) + "\n}\n"


def peer_config(n4: int, n6: int, port: int = 3, asn: int = 65003) -> str:
    """The peer in h<port>: the whole table in static protocols, its session to the router disabled."""
    return (f"router id 10.0.{port}.2;\n"
            "protocol device { scan time 10; }\n"
            + static_routes("full4", "ipv4", prefixes(n4, BASE4))
            + static_routes("full6", "ipv6", prefixes(n6, fulltable.V6_BASE, 6))
            + "protocol bgp taprouter {\n"
              "  disabled;\n"
              f"  local 10.0.{port}.2 as {asn};\n"
              f"  neighbor 10.0.{port}.1 as {birdlab.ROUTER_AS};\n"
              f"  hold time {HOLD}; {birdlab.BGP_TIMERS}\n"
              "  ipv4 { import none; export where source = RTS_STATIC; };\n"
              f"  ipv6 {{ import none; export where source = RTS_STATIC; next hop address 2001:db8:{port}::2; }};\n"
              "}\n")


def router_config(port: int = 3, asn: int = 65003) -> str:
    """The router's side: both families on one session; graceful restart as BIRD's default (aware),
    which the kill -9 stage's recovery needs."""
    return (f"protocol bgp peer{port} {{\n"
            f"  local 10.0.{port}.1 as {birdlab.ROUTER_AS};\n"
            f"  neighbor 10.0.{port}.2 as {asn};\n"
            f"  hold time {HOLD}; {birdlab.BGP_TIMERS}\n"
            "  ipv4 { import all; export none; };\n"
            "  ipv6 { import all; export none; };\n"
            "}\n")


# --- the kernel, watched -----------------------------------------------------------------------

class KernelRoutes:
    """The router netns's main-table routes, kept by a netlink listener (subscribed, then dumped),
    with the lowest count seen since `reset_low()`."""

    def __init__(self, netns_name: str):
        self.netns = netns_name
        self.keys: set[int] = set()
        self.low = 0
        self.overflows = 0
        self.reached: float | None = None  # when `until` came true, timed in the listener
        self._until = None
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="kernel-routes", daemon=True)

    def __enter__(self) -> "KernelRoutes":
        self._thread.start()
        if not self._ready.wait(120):
            raise TimeoutError("the kernel route listener did not start")
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)

    @property
    def count(self) -> int:
        if self._error is not None:
            raise RuntimeError("the kernel route listener failed") from self._error
        return len(self.keys)

    def reset_low(self) -> None:
        self.low = len(self.keys)

    def watch(self, until) -> None:
        """Time the moment until(count) comes true, as the listener applies the events."""
        self.reached = None
        self._until = until
        if until(len(self.keys)):
            self.reached = time.monotonic()

    def _run(self) -> None:
        try:
            with netns.entered(self.netns):
                sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
            with sock:
                sock.setsockopt(socket.SOL_SOCKET, 33, 512 << 20)  # SO_RCVBUFFORCE: a burst is 100s of MB
                sock.bind((0, RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE))
                self.keys = {pk for pk, _entry in dump_routes(self.netns)}
                self.low = len(self.keys)
                self._ready.set()
                receiver = recvmany.Receiver()
                while not self._stop.is_set():
                    if not select.select([sock], [], [], 0.2)[0]:
                        continue
                    try:
                        data = receiver.read(sock)
                    except OSError as exc:
                        if exc.errno != 105:  # ENOBUFS: events lost; count again from a dump
                            raise
                        self.overflows += 1
                        self.keys = {pk for pk, _entry in dump_routes(self.netns)}
                        continue
                    if data:
                        self._apply(data)
        except BaseException as exc:  # reported by `count`, in the bench's thread
            self._error = exc
            self._ready.set()

    def _apply(self, data: bytes) -> None:
        events = rtshape.route_events(data)
        if events is None:  # only route groups are subscribed; a datagram of others is not ours
            return
        keys = self.keys
        for pk, _route, delete in events:
            if delete:
                keys.discard(pk)
            else:
                keys.add(pk)
        if len(keys) < self.low:
            self.low = len(keys)
        if self.reached is None and self._until is not None and self._until(len(keys)):
            self.reached = time.monotonic()


# --- the bench -------------------------------------------------------------------------------

class BgpBench:
    def __init__(self, n4: int, n6: int):
        self.n4, self.n6 = n4, n6
        self.tmp = Path(tempfile.mkdtemp(prefix="bgpfull-"))
        peer = birdlab.PeerSpec(3, peer_config(n4, n6), (f"{TARGET}/32",), start_timeout=30 + (n4 + n6) / 10_000)
        self.lab = birdlab.BirdLab(self.tmp, peers=[peer], router_extra=router_config())

    # -- what is where ----------------------------------------------------------------------

    def switch(self, probe: FlowProbe) -> int:
        return probe.table_count(Table.FIB4) + probe.table_count(Table.FIB6)

    def imported(self) -> int:
        """Routes the router's BIRD imported from the peer, both channels."""
        out = self.lab.router_birdc("show protocols all peer3", check=False, timeout=60)
        return sum(int(n) for n in re.findall(r"Routes:\s+(\d+) imported", out))

    def established(self) -> bool:
        out = self.lab.router_birdc("show protocols peer3", check=False, timeout=60)
        return bool(re.search(r"peer3\s+BGP\s+\S+\s+up\s+\S+\s+Established", out))

    def wait_established(self) -> float:
        while not self.established():
            time.sleep(0.01)
        return time.monotonic()

    def until(self, kernel: KernelRoutes, probe: FlowProbe, kernel_done, switch_done, what: str,
              t0: float) -> dict:
        """Until each is done, seconds from t0 to each: the kernel's timed by its listener, the
        switch's by polling."""
        done: dict[str, float] = {}
        kernel.watch(kernel_done)
        while len(done) < 2:
            now = time.monotonic()
            if now - t0 > TIMEOUT:
                raise TimeoutError(f"{what}: not done in {TIMEOUT:.0f} s: kernel {kernel.count}, "
                                   f"switch {self.switch(probe)}, done {done}")
            if "kernel_s" not in done and kernel.count is not None and kernel.reached is not None:
                done["kernel_s"] = kernel.reached - t0
            if "switch_s" not in done and switch_done(self.switch(probe)):
                done["switch_s"] = time.monotonic() - t0
            time.sleep(POLL)
        # A small table can be in the kernel within a clock tick: no ratio then, not a division by 0.
        ratio = done["switch_s"] / done["kernel_s"] if done["kernel_s"] > 0 else None
        return {"kernel_s": round(done["kernel_s"], 3), "switch_s": round(done["switch_s"], 3),
                "ratio": None if ratio is None else round(ratio, 3)}

    # -- stages -----------------------------------------------------------------------------

    def announce(self, kernel: KernelRoutes, probe: FlowProbe, base: tuple[int, int]) -> dict:
        n = self.n4 + self.n6
        cpu = self.cpu()
        with steal.Meter() as meter:
            enabled = time.monotonic()
            self.lab.peer(3).birdc("enable taprouter")
            t0 = self.wait_established()
            got = self.until(kernel, probe, lambda c: c >= base[0] + n, lambda c: c >= base[1] + n, "announce", t0)
        got["established_after_enable_s"] = round(t0 - enabled, 3)
        return {**got, **self.cpu_since(cpu, n), **meter.steal.figures(), "load_avg": os.getloadavg()[0]}

    def withdraw(self, kernel: KernelRoutes, probe: FlowProbe, base: tuple[int, int]) -> dict:
        n = self.n4 + self.n6
        cpu = self.cpu()
        with steal.Meter() as meter:
            t0 = time.monotonic()
            self.lab.peer(3).birdc("disable taprouter")
            got = self.until(kernel, probe, lambda c: c <= base[0], lambda c: c <= base[1], "withdraw", t0)
        return {**got, **self.cpu_since(cpu, n), **meter.steal.figures(), "load_avg": os.getloadavg()[0]}

    def kill(self, kernel: KernelRoutes, probe: FlowProbe, full: tuple[int, int]) -> dict:
        """BIRD kill -9 with the table in place, under 1000 pps of pings counted by the receiver."""
        lab = self.lab
        lab.assert_ping(lab.host(1), TARGET)
        received0 = self.received()
        old_pid = lab.bird()["pid"]
        bird_log = lab.router_bird_log.stat().st_size
        ping = subprocess.Popen(["ip", "netns", "exec", lab.host(1).name, "ping", "-n", "-q", "-i",
                                 str(PING_INTERVAL), "-W", "1", TARGET],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        figures: dict = {}
        low_switch = full[1]
        try:
            time.sleep(1)
            kernel.reset_low()
            t0 = time.monotonic()
            os.kill(old_pid, signal.SIGKILL)
            while True:
                now = time.monotonic() - t0
                if now > TIMEOUT:
                    raise TimeoutError(f"kill -9: not recovered in {TIMEOUT:.0f} s: {figures}")
                low_switch = min(low_switch, self.switch(probe))
                if "restarted_s" not in figures and (pid := lab.router_bird_pid_file()) and pid != old_pid \
                        and lab.router_bird_socket.exists():
                    figures["restarted_s"] = round(now, 3)
                if "restarted_s" in figures and "relearnt_s" not in figures and now - figures.get("_asked", 0) > 0.5:
                    figures["_asked"] = now
                    if self.imported() >= self.n4 + self.n6:
                        figures["relearnt_s"] = round(time.monotonic() - t0, 3)
                if "recovered_s" not in figures and "Graceful restart done" in self.bird_log_since(bird_log):
                    figures["recovered_s"] = round(time.monotonic() - t0, 3)
                if "relearnt_s" in figures and "recovered_s" in figures and kernel.count >= full[0] \
                        and self.switch(probe) >= full[1]:
                    figures["whole_s"] = round(time.monotonic() - t0, 3)
                    break
                time.sleep(POLL)
            time.sleep(1)
        finally:
            ping.send_signal(signal.SIGINT)  # ping prints its summary on SIGINT
            try:
                out, err = ping.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                ping.kill()
                out, err = ping.communicate()
        figures.pop("_asked", None)
        match = re.search(r"(\d+) packets transmitted, (\d+) received", out)
        if not match:
            raise RuntimeError(f"no ping summary: {out}{err}")
        sent, replies = int(match.group(1)), int(match.group(2))
        arrived = self.received() - received0
        figures.update({"pings_sent": sent, "pings_received_by_target": arrived, "lost": sent - arrived,
                        "replies": replies, "kernel_low": kernel.low, "kernel_full": full[0],
                        "switch_low": low_switch, "switch_full": full[1], "load_avg": os.getloadavg()[0]})
        return figures

    def received(self) -> int:
        """Echo requests h3's kernel has received (Icmp InEchos of its netns): nothing else pings it."""
        lines = [line.split() for line in self.lab.host(3).run("cat", "/proc/net/snmp").splitlines()
                 if line.startswith("Icmp:")]
        return int(lines[1][lines[0].index("InEchos")])

    def bird_log_since(self, offset: int) -> str:
        with open(self.lab.router_bird_log, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")

    def cpu(self) -> dict[str, float]:
        return {"daemon": cpu_seconds(self.lab.proc.pid), "ovs_vswitchd": cpu_seconds(ovs_pid()),
                "bird": cpu_seconds(self.lab.bird()["pid"])}

    def cpu_since(self, before: dict[str, float], routes: int) -> dict:
        now = self.cpu()
        return {f"{k}_cpu_us_per_route": round((now[k] - before[k]) / routes * 1e6, 2) for k in before}


def verify(lab, results: dict, stage: str) -> None:
    """After a stage, off the clock: every kernel route a flow on the switch, no flow without its
    route (both families, read back in full)."""
    hosts = {f"{n['dst']}/{128 if ':' in n['dst'] else 32}" for n in lab.router_neighbours()
             if n.get("lladdr") and not n["dst"].startswith("fe80:")}
    check = compare(lab.netns, lab.bridge, hosts)
    results.setdefault("verify", {})[stage] = {k: v for k, v in check.items() if not k.endswith("_some")}
    log(f"verify after {stage}: {check['kernel_routes']} kernel routes, {check['switch_flows']} route flows, "
        f"{check['missing']} missing, {check['stale']} stale")
    if check["missing"] or check["stale"]:
        raise AssertionError(f"switch differs from the kernel after {stage}: missing {check['missing_some']}, "
                             f"stale {check['stale_some']}")


def pin_neighbours(lab) -> None:
    """Make the router's neighbour entries permanent (same MACs). The FIB tables' counts include
    a host flow per neighbour, and an idle neighbour the kernel forgets in a stage's middle (h1's
    IPv6 one did, 2 minutes in) takes its flow along, so a count would never reach its target."""
    for entry in lab.router_neighbours():
        if entry.get("lladdr"):
            lab.in_router("ip", "neigh", "replace", entry["dst"], "dev", entry["dev"], "lladdr", entry["lladdr"],
                          "nud", "permanent")


def times(ratio: float | None) -> str:
    return "no ratio: the kernel's time was 0" if ratio is None else f"{ratio:.2f}x"


def log(text: str) -> None:
    print(f"[bgp_full] {text}", flush=True)


def main() -> int:
    if os.geteuid() != 0:
        raise SystemExit("needs root: it creates network namespaces, TAPs and an OVS bridge")
    n4 = int(os.environ.get("BENCH_ROUTES", "1000000"))
    n6 = fulltable.count6(n4)
    run("bash", str(ROOT / "scripts" / "ovs-start.sh"), timeout=60)
    bench = BgpBench(n4, n6)
    lab = bench.lab
    results: dict = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cpus": os.cpu_count(), "ipv4_routes": n4,
                     "ipv6_routes": n6, "load_avg_before": os.getloadavg()}
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM tears down like Ctrl-C
    problems: list[str] = []
    try:
        started = time.monotonic()
        lab.build()  # the peer BIRD parses its table here, before any clock
        log(f"lab {lab.prefix}: peer BIRD up with {n4} + {n6} static routes after {time.monotonic() - started:.1f} s")
        lab.start(timeout=60)
        # Resolve both next hops first: routes become flows with a group, and the neighbours' own
        # flows are in the counts before the clock starts.
        lab.assert_ping(lab.host(1), "10.0.3.2")
        lab.assert_ping(lab.host(1), "2001:db8:3::2")
        pin_neighbours(lab)
        with KernelRoutes(lab.netns) as kernel, FlowProbe(lab.bridge) as probe:
            base = (kernel.count, bench.switch(probe))
            log(f"before: kernel {base[0]} routes, switch {base[1]} FIB flows; load average {os.getloadavg()}")
            results["announce"] = got = bench.announce(kernel, probe, base)
            log(f"announce: {n4 + n6} prefixes from Established: kernel {got['kernel_s']:.2f} s, switch "
                f"{got['switch_s']:.2f} s ({times(got['ratio'])}); {got}")
            verify(lab, results, "announce")
            results["withdraw"] = got = bench.withdraw(kernel, probe, base)
            log(f"withdraw: kernel empty of them {got['kernel_s']:.2f} s, switch {got['switch_s']:.2f} s "
                f"({times(got['ratio'])}); {got}")
            verify(lab, results, "withdraw")
            results["reannounce"] = got = bench.announce(kernel, probe, base)
            log(f"announce again: kernel {got['kernel_s']:.2f} s, switch {got['switch_s']:.2f} s ({times(got['ratio'])})")
            full = (kernel.count, bench.switch(probe))
            results["kill"] = got = bench.kill(kernel, probe, full)
            log(f"BIRD kill -9: {got}")
            verify(lab, results, "kill")
            results["kernel_overflows"] = kernel.overflows
        results["load_avg_after"] = os.getloadavg()
        OUT.write_text(json.dumps(results, indent=2) + "\n")
        log(f"wrote {OUT}")
    finally:
        if os.environ.get("BENCH_KEEP") == "1" and lab.log_path.exists():
            shutil.copy(lab.log_path, ROOT / "benchmarks" / "bgp_full-daemon.log")
        problems = lab.teardown()
        shutil.rmtree(bench.tmp, ignore_errors=True)
        if problems:
            print("teardown problems:\n  " + "\n  ".join(problems), file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
