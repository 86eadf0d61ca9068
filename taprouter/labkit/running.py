"""A lab that is up: what `taprouter lab` and the pytest plugin do with it (exec, ping, routes,
BIRD, links down and up, a node killed and restarted, down)."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from ..controller.openflow.pipeline import FIB_PRIORITY_BASE, Table
from ..routing.birdctl import BirdControl, BirdError
from . import build, converge, ofctl, topology as topology_mod
from .journal import Journal
from .plan import LabPlan, make

LOG_TAIL = 3000
SETTLE = 1.1  # seconds from the databases agreeing to the routes being final: more than BIRD's OSPF tick (1 s)



class LabError(Exception):
    pass


@dataclass(frozen=True)
class Ping:
    sent: int
    received: int
    rtt_ms: float | None  # the average; None when nothing came back
    output: str

    @property
    def loss(self) -> float:
        """The share of echo requests lost, 0.0 to 1.0."""
        return 1.0 - self.received / self.sent if self.sent else 1.0


@dataclass(frozen=True)
class Offload:
    """A route as the switch holds it: a next-hop group (ECMP: a select group with one bucket per
    path) or the controller (the kernel forwards)."""
    group: int | None
    group_type: str | None
    paths: int


@dataclass(frozen=True)
class Routes:
    kernel: Mapping[str, tuple[str, ...]]  # prefix -> its gateways ("" for a connected route)
    switch: Mapping[str, Offload]  # prefix -> how the switch forwards it


def parse_ping(text: str) -> Ping:
    sent = re.search(r"(\d+) packets transmitted", text)
    received = re.search(r"(\d+) (?:packets )?received", text)
    rtt = re.search(r"= [\d.]+/([\d.]+)/", text)
    return Ping(int(sent.group(1)) if sent else 0, int(received.group(1)) if received else 0,
                float(rtt.group(1)) if rtt else None, text)


def kernel_routes(ip_json: list[dict]) -> dict[str, tuple[str, ...]]:
    """`ip -j route` entries as prefix -> gateways (a multipath route has several)."""
    routes = {}
    for route in ip_json:
        dst = route.get("dst", "")
        if dst == "default":
            dst = "::/0" if ":" in str(route.get("gateway", route.get("prefsrc", ""))) else "0.0.0.0/0"
        if route.get("type", "unicast") != "unicast" or dst.startswith("fe80"):
            continue
        network = str(ipaddress.ip_network(dst, strict=False))
        hops = [h.get("gateway", "") for h in route.get("nexthops", [])] or [route.get("gateway", "")]
        routes[network] = tuple(sorted(hops))
    return routes


class RunningLab:
    def __init__(self, plan: LabPlan):
        self.plan = plan
        self.journal = Journal(plan.state_file)
        self.links_down: set[frozenset[str]] = set()
        self.dead: set[str] = set()

    # -- up and down ------------------------------------------------------------------------------

    @classmethod
    def up(cls, path: str | Path, prefix: str | None = None, run_dir: Path | None = None,
           wait: bool = True, timeout: float | None = None) -> "RunningLab":
        """Check, build and (with `wait`) wait until converged. A failure tears down what was built
        and raises, with the reason."""
        topo = topology_mod.load(path)
        problems = topology_mod.refusals(topo)
        if problems:
            raise topology_mod.TopologyError(problems)
        why = build.ensure_ovs()
        if why:
            raise LabError(why)
        plan = make(topo, prefix, run_dir)
        lab = cls(plan)
        if lab.journal.exists() and lab.journal.entries():
            raise LabError(f"a lab from {topo.path} is already up (state {plan.state_file}); "
                           f"`taprouter lab down {topo.path}` first")
        try:
            build.up(plan, lab.journal)
            if wait:
                lab.wait_converged(timeout)
        except BaseException:
            lab.down()
            raise
        return lab

    @classmethod
    def fresh(cls, path: str | Path, **options) -> "RunningLab":
        """A lab with a prefix of its own and its run files under /tmp: for tests, so that a lab
        left by a crashed run never stands in the way."""
        topo_path = Path(path).resolve()
        for _ in range(50):
            prefix = "l" + os.urandom(2).hex()
            if not build.leftovers(prefix):
                break
        run_dir = Path(tempfile.mkdtemp(prefix=f"taprouter-lab-{prefix}-"))
        return cls.up(topo_path, prefix=prefix, run_dir=run_dir, **options)

    def down(self) -> list[str]:
        return build.teardown(self.journal)

    # -- waiting ----------------------------------------------------------------------------------

    def wait_converged(self, timeout: float | None = None) -> float:
        """Wait until every BGP session is Established and every OSPF neighbour Full, then until
        every router's kernel routes are on its switch and stay put; returns the seconds waited.
        Raises NotConverged naming what is not."""
        timeout = self.plan.topology.timeout if timeout is None else timeout
        start = time.monotonic()
        converge.wait(self.plan, timeout, alive=self.check_alive, down=frozenset(self.links_down),
                      dead=frozenset(self.dead))
        agreed, previous = time.monotonic(), None
        while True:
            # BIRD computes routes on its OSPF tick (1 s by default) after its database changed, and
            # the kernel's routes then reach the switch: so a tick after the databases agreed, the
            # routes must be on the switch and the same as at the poll before.
            snapshot = {r.name: self.routes(r.name) for r in self.plan.topology.routers if r.name not in self.dead}
            missing = [f"{name}: {prefix} is in the kernel, not on the switch" for name, routes in snapshot.items()
                       for prefix in routes.kernel if prefix not in routes.switch]
            now = time.monotonic()
            if not missing and snapshot == previous and now - agreed >= SETTLE:
                return now - start
            previous = snapshot
            if now - start >= timeout:
                raise converge.NotConverged(now - start, missing or ["the routes are still changing"])
            time.sleep(converge.POLL)

    def pending(self) -> list[str]:
        return converge.pending(self.plan, frozenset(self.links_down), frozenset(self.dead))

    @staticmethod
    def wait_until(predicate, timeout: float = 10.0, interval: float = 0.2, message: str = ""):
        """Poll `predicate` until it returns something truthy, and return that; TimeoutError after."""
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if result:
                return result
            if time.monotonic() >= deadline:
                raise TimeoutError(f"not true within {timeout:g} s: {message or predicate}")
            time.sleep(interval)

    def check_alive(self) -> None:
        """Raise if a daemon the lab started has exited (unless a test killed it)."""
        live = {pid for pid, _, _ in build.live_processes(self.journal)}
        latest: dict[str, int] = {}
        for entry in self.journal.entries():
            if entry.kind == "process":
                latest[entry.name] = int(entry.data["pid"])
            elif entry.kind == "killed":
                latest.pop(entry.name, None)
        for node, pid in latest.items():
            if pid not in live:
                raise LabError(f"{node}: its daemon (pid {pid}) exited; log:\n{self.log(node)[-LOG_TAIL:]}")

    def log(self, node: str) -> str:
        kind = self.plan.topology.kind(node)
        path = (self.plan.router_dir(node) / "daemon.log" if kind == "router"
                else self.plan.run_dir / "peers" / f"{node}.log")
        try:
            text = path.read_text(errors="replace")
        except OSError:
            text = ""
        if kind == "peer" and self.plan.frr_dir(node).is_dir():
            for daemon_log in sorted(self.plan.frr_dir(node).glob("*.log")):
                text += f"\n--- {daemon_log.name} ---\n" + daemon_log.read_text(errors="replace")[-LOG_TAIL:]
        if kind == "router":
            try:
                text += "\n--- bird.log ---\n" + (self.plan.router_dir(node) / node / "bird.log").read_text(
                    errors="replace")
            except OSError:
                pass
        return text

    # -- nodes ------------------------------------------------------------------------------------

    def netns(self, node: str) -> str:
        kind = self.plan.topology.kind(node)
        if kind is None:
            raise LabError(f"no node {node!r} (nodes: {', '.join(self.plan.topology.node_names())})")
        if kind == "switch":
            raise LabError(f"{node} is a switch: it has no netns (its bridge is {self.plan.bridge_of(node).name})")
        return self.plan.netns_of(node)

    def exec(self, node: str, *cmd: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        full = ["ip", "netns", "exec", self.netns(node), *cmd]
        proc = subprocess.run(full, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise LabError(f"{node}: {' '.join(cmd)} exited {proc.returncode}: {proc.stderr.strip()}")
        return proc

    def address(self, node: str, version: int = 4) -> str:
        """A node's first address of that IP version: a host's or peer's interfaces then its loopback,
        a router's ports in order."""
        topo = self.plan.topology
        kind = topo.kind(node)
        if kind == "router":
            candidates = [a for p in topo.router(node).ports for a in p.addresses]
        elif kind in ("host", "peer"):
            spec = next(h for h in (*topo.hosts, *topo.peers) if h.name == node)
            candidates = [a for _, addresses in spec.interfaces for a in addresses] + list(spec.loopback)
        else:
            raise LabError(f"no node {node!r} with addresses")
        found = next((a for a in candidates if a.version == version), None)
        if found is None:
            raise LabError(f"{node} has no IPv{version} address")
        return str(found.ip)

    def ping(self, a: str, b: str, count: int = 3, interval: float = 0.2, wait: float = 1.0,
             version: int | None = None) -> Ping:
        """Ping from node `a` to node `b` (its first address) or to an address."""
        try:
            target = str(ipaddress.ip_address(b))
        except ValueError:
            target = self.address(b, version or 4)
        proc = self.exec(a, "ping", "-n", "-q", "-c", str(count), "-i", str(interval), "-W", str(wait), target,
                         check=False, timeout=count * (interval + wait) + 10)
        return parse_ping(proc.stdout + proc.stderr)

    def vtysh(self, node: str, command: str) -> str:
        """A FRR peer's answer to a vtysh command (e.g. "show bgp summary")."""
        if self.plan.topology.kind(node) != "peer" or self.plan.topology.peer(node).daemon != "frr":
            raise LabError(f"{node} runs no FRR")
        try:
            return converge.vtysh(self.plan.frr_dir(node), command, timeout=10)
        except BirdError as exc:
            raise LabError(f"{node}: {exc}") from None

    def _answers(self, node: str) -> bool:
        if self.plan.topology.kind(node) == "peer" and self.plan.topology.peer(node).daemon == "exabgp":
            return bool(build.live_processes(self.journal, node))
        try:
            if self.plan.topology.kind(node) == "peer" and self.plan.topology.peer(node).daemon == "frr":
                return "FRRouting" in converge.vtysh(self.plan.frr_dir(node), "show version", timeout=2)
            return BirdControl(str(self.plan.bird_socket(node)), timeout=1).alive()
        except BirdError:
            return False

    def bird(self, node: str, command: str) -> str:
        """A BIRD command's answer (e.g. "show route"), as birdc prints it."""
        kind = self.plan.topology.kind(node)
        if kind not in ("router", "peer") or (kind == "peer" and self.plan.topology.peer(node).daemon != "bird"):
            frr = kind == "peer" and self.plan.topology.peer(node).daemon == "frr"
            raise LabError(f"{node} runs no BIRD" + (" (a FRR peer: use vtysh())" if frr else ""))
        try:
            lines = BirdControl(str(self.plan.bird_socket(node)), timeout=10).query(command)
        except BirdError as exc:
            raise LabError(f"{node}: {exc}") from None
        return "\n".join(text for _, text in lines)

    def routes(self, router: str) -> Routes:
        """The router's routes in its kernel, and on its switch (the FIB tables and their groups)."""
        if self.plan.topology.kind(router) != "router":
            raise LabError(f"{router} is not a router")
        kernel = {}
        for family in ("-4", "-6"):
            out = self.exec(router, "ip", "-j", family, "route", "show").stdout
            kernel.update(kernel_routes(json.loads(out or "[]")))
        bridge = self.plan.bridge_of(router).name
        groups = ofctl.groups(bridge)
        switch = {}
        for table in (Table.FIB4, Table.FIB6):
            for flow in ofctl.flows(bridge, int(table)):
                destination = flow.destination
                if destination is None and flow.priority == FIB_PRIORITY_BASE and flow.match.get(
                        "ip" if table == Table.FIB4 else "ipv6"):
                    destination = "0.0.0.0/0" if table == Table.FIB4 else "::/0"  # the default route
                if destination is None:
                    continue
                group = groups.get(flow.group) if flow.group is not None else None
                switch[str(destination)] = Offload(flow.group, group.type if group else None,
                                                        len(group.buckets) if group else 0)
        return Routes(kernel, switch)

    # -- failures ---------------------------------------------------------------------------------

    def _wire(self, a: str, b: str):
        wire = next((w for w in self.plan.wires if w.joins(a, b)), None)
        if wire is None:
            raise LabError(f"no link joins {a} and {b}")
        return wire

    def _set_link(self, a: str, b: str, state: str) -> None:
        for end in (self._wire(a, b).a, self._wire(a, b).b):
            if end.netns is None:
                build.netdev.sh("ip", "link", "set", end.veth, state)
            else:
                build.netdev.sh("ip", "link", "set", end.interface, state, netns=end.netns)

    def link_down(self, a: str, b: str) -> None:
        """Both ends of the link between two nodes down: each side sees its carrier go."""
        self._set_link(a, b, "down")
        self.links_down.add(frozenset((a, b)))

    def link_up(self, a: str, b: str) -> None:
        self._set_link(a, b, "up")
        self.links_down.discard(frozenset((a, b)))

    def kill(self, node: str) -> None:
        """SIGKILL a node's daemons: a router's taprouter daemon and its BIRD, a peer's BIRD."""
        kind = self.plan.topology.kind(node)
        if kind not in ("router", "peer"):
            raise LabError(f"{node} is a {kind or 'name of no node'}: only routers and peers run daemons")
        processes = build.live_processes(self.journal, node)
        bird_pid = build.router_bird_pid(self.plan.run_dir, node) if kind == "router" else None
        if bird_pid is not None:
            processes.append((bird_pid, str(self.plan.bird_socket(node)), node))
        self.journal.record("killed", node)
        self.dead.add(node)
        build.stop(processes, signal.SIGKILL, wait=5)

    def restart(self, node: str, timeout: float = 10) -> None:
        """Kill the node's daemons if they run, and start them again; waits until its BIRD answers."""
        if build.live_processes(self.journal, node):
            self.kill(node)
        if self.plan.topology.kind(node) == "router":
            build.start_router(self.plan, self.journal, node)
        else:
            build.start_peer(self.plan, self.journal, node)
        self.dead.discard(node)
        deadline = time.monotonic() + timeout
        while not self._answers(node):
            if time.monotonic() > deadline:
                raise LabError(f"{node}: not answering {timeout:g} s after the restart; log:\n"
                               f"{self.log(node)[-LOG_TAIL:]}")
            time.sleep(0.1)

    # -- telling the user -------------------------------------------------------------------------

    def reach(self) -> str:
        """How to reach each node, for `lab up` to print."""
        topo = self.plan.topology
        lines = [f"lab {topo.name} (prefix {self.plan.prefix}, run files in {self.plan.run_dir})"]
        for node in topo.node_names():
            kind = topo.kind(node)
            if kind == "switch":
                lines.append(f"  {node:<10} switch  bridge {self.plan.bridge_of(node).name}")
                continue
            where = f"netns {self.plan.netns_of(node)}"
            if kind == "router":
                addresses = [str(a) for p in topo.router(node).ports for a in p.addresses]
                extra = f"  switch {self.plan.bridge_of(node).name}"
            else:
                spec = next(h for h in (*topo.hosts, *topo.peers) if h.name == node)
                addresses = [str(a) for _, items in spec.interfaces for a in items] + [str(a) for a in spec.loopback]
                extra = ""
            lines.append(f"  {node:<10} {kind:<7} {where}{extra}  {' '.join(addresses)}")
            if kind == "peer" and topo.peer(node).daemon == "frr":
                lines.append(f"  {'':<10} vtysh --vty_socket {self.plan.frr_dir(node)}")
            elif kind in ("router", "peer"):
                lines.append(f"  {'':<10} birdc -s {self.plan.bird_socket(node)}")
        lines.append(f"  taprouter lab exec NODE -- CMD   runs a command in a node; "
                     f"taprouter lab down {topo.path} removes it all")
        return "\n".join(lines)
