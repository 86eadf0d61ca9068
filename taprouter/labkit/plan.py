"""What a topology becomes on this machine: every name (with the lab's prefix), bridge, veth and
daemon config, computed without touching anything so that `up` and `down` agree on it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from .topology import Endpoint, Topology, speaks_ospf

RUN_BASE = Path("/run/taprouter-lab")
PREFIX_LENGTH = 5  # "l" and four hex digits: names stay within Linux's 15 characters


def default_prefix(topology_path: Path) -> str:
    return "l" + hashlib.sha1(str(topology_path.resolve()).encode()).hexdigest()[:PREFIX_LENGTH - 1]


@dataclass(frozen=True)
class Bridge:
    name: str
    node: str
    router: bool  # a router's switch (OpenFlow, fail-mode secure) or a plain learning switch
    dpid: int


@dataclass(frozen=True)
class End:
    """One end of a veth: on a bridge (port number) in the root netns, or moved into a node's netns."""
    node: str
    veth: str  # its name as created, in the root netns
    bridge: str | None = None
    ofport: int | None = None  # routers' ports keep their numbers; switches' are left to OVS
    netns: str | None = None
    interface: str | None = None  # its name inside the netns


@dataclass(frozen=True)
class Wire:
    a: End
    b: End

    def joins(self, x: str, y: str) -> bool:
        return {self.a.node, self.b.node} == {x, y}


@dataclass(frozen=True)
class LabPlan:
    topology: Topology
    prefix: str
    run_dir: Path
    netns: tuple[tuple[str, str], ...]  # (node, netns) of hosts, peers and routers
    bridges: tuple[Bridge, ...]
    wires: tuple[Wire, ...]

    def netns_of(self, node: str) -> str:
        return dict(self.netns)[node]

    def bridge_of(self, node: str) -> Bridge:
        return next(b for b in self.bridges if b.node == node)

    def router_dir(self, router: str) -> Path:
        """TAPROUTER_RUN_DIR of the router's own daemon (its router directory is one below)."""
        return self.run_dir / "routers" / router

    def router_config(self, router: str) -> Path:
        return self.router_dir(router) / "taprouter.yaml"

    def frr_dir(self, node: str) -> Path:
        """A FRR peer's pid files, vty sockets and logs (owned by the frr user, whom FRR runs as)."""
        return self.run_dir / "peers" / node

    def bird_socket(self, node: str) -> Path:
        if self.topology.kind(node) == "router":
            return self.router_dir(node) / node / "bird.ctl"
        return self.run_dir / "peers" / f"{node}.ctl"

    @property
    def state_file(self) -> Path:
        return self.run_dir / "state.jsonl"

    def daemon_config(self, router: str, controller_port: int) -> dict:
        """The taprouter config of a router's own daemon: its switch, its TAPs, the user's BIRD."""
        spec = self.topology.router(router)
        home = self.router_dir(router)
        entry: dict = {
            "dpid": hex(self.bridge_of(router).dpid),
            "netns": self.netns_of(router),
            "ports": {p.number: {"tap": p.tap, "addresses": [str(a) for a in p.addresses]} for p in spec.ports},
        }
        if spec.bird is not None:
            entry["bird"] = {"config": str(spec.bird)}
        return {
            "openflow": {"listen": f"127.0.0.1:{controller_port}"},
            "database": f"sqlite:///{home / 'taprouter.db'}",
            "control": {"socket": str(home / "control.sock")},
            "metrics": {"listen": None},  # no /metrics: labs run many daemons side by side
            "routers": {router: entry},
        }

    def owner(self, address: str) -> str | None:
        """The node that has this address on an interface, a port or its loopback."""
        topo = self.topology
        for router in topo.routers:
            if any(str(a.ip) == address for p in router.ports for a in p.addresses):
                return router.name
        for host in (*topo.hosts, *topo.peers):
            if any(str(a.ip) == address for _, items in host.interfaces for a in items) or any(
                    str(a.ip) == address for a in host.loopback):
                return host.name
        return None

    def ospf_expected(self, down: frozenset[frozenset[str]] = frozenset(),
                      dead: frozenset[str] = frozenset()) -> dict[str, int]:
        """OSPF neighbours each OSPF speaker should reach Full with: the OSPF speakers across its
        links (all of them on a switch's LAN), unless the file gives a count. Links taken `down`
        (pairs of nodes) and `dead` nodes count for nothing."""
        speakers = {r.name for r in self.topology.routers if speaks_ospf(r.bird)}
        speakers |= {p.name for p in self.topology.peers if speaks_ospf(p.config)}
        speakers -= dead
        links = [lk for lk in self.topology.links if frozenset((lk.a.node, lk.b.node)) not in down]
        lans: dict[str, set[str]] = {}
        for link in links:
            for end, other in ((link.a, link.b), (link.b, link.a)):
                if end.kind == "switch":
                    lans.setdefault(end.node, set()).add(other.node)
        expected: dict[str, int] = {}
        for node in sorted(speakers):
            count = 0
            for link in links:
                for end, other in ((link.a, link.b), (link.b, link.a)):
                    if end.node != node:
                        continue
                    if other.kind == "switch":
                        count += len((lans[other.node] - {node}) & speakers)
                    elif other.node in speakers:
                        count += 1
            override = (self.topology.router(node).ospf_neighbours if self.topology.kind(node) == "router"
                        else self.topology.peer(node).ospf_neighbours)
            expected[node] = count if override is None else min(override, count) if down or dead else override
        return expected


def make(topology: Topology, prefix: str | None = None, run_dir: Path | None = None) -> LabPlan:
    prefix = prefix or default_prefix(topology.path)
    run_dir = run_dir or RUN_BASE / prefix
    netns = tuple((n, f"{prefix}-{n}") for n in
                  [r.name for r in topology.routers] + [h.name for h in topology.hosts]
                  + [p.name for p in topology.peers])
    seed = int(prefix[1:], 16) if prefix[1:] and all(c in "0123456789abcdef" for c in prefix[1:]) else 0
    bridges = tuple(Bridge(f"{prefix}b{i}", node, router, (0x7A1 << 40) | (seed << 16) | i)
                    for i, (node, router) in enumerate(
                        [(r.name, True) for r in topology.routers] + [(s.name, False) for s in topology.switches]))
    namespaces = dict(netns)
    by_node = {b.node: b for b in bridges}

    def end(endpoint: Endpoint, veth: str) -> End:
        if endpoint.kind in ("router", "switch"):
            return End(endpoint.node, veth, bridge=by_node[endpoint.node].name, ofport=endpoint.port)
        return End(endpoint.node, veth, netns=namespaces[endpoint.node], interface=endpoint.interface)

    wires = tuple(Wire(end(link.a, f"{prefix}v{i}a"), end(link.b, f"{prefix}v{i}b"))
                  for i, link in enumerate(topology.links))
    return LabPlan(topology, prefix, run_dir, netns, bridges, wires)
