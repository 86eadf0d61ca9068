"""An HA pair in the lab: two taprouter daemons (A and B) on one OVS bridge, a lease in PostgreSQL.

A builds the bridge, the hosts h1..h3 and the BGP peer; B borrows them. Each has its own router
netns, TAPs (named with its own prefix), run directory, BIRD and OpenFlow listen port; both carry the
same router addresses (and MACs: a TAP takes its switch port's). The bridge has both as controllers.
The database is one of the session's throwaway PostgreSQL cluster (tests/pgcluster.py).
"""

from __future__ import annotations

import itertools
import json
import subprocess
import time
from pathlib import Path
from typing import Iterator

import yaml

import birdlab
from routerlab import RouterLab, TAPROUTER, free_tcp_port, run, wait_until

_databases = itertools.count()


class _Borrowed:
    """Another lab's bridge and hosts: everything but taking them down."""

    def __init__(self, lab) -> None:
        self._lab = lab

    def __getattr__(self, name):
        return getattr(self._lab, name)

    def down(self) -> None:
        pass


class HaRouter(birdlab.BirdLab):
    """One daemon of the pair; `shared` is the other, whose bridge, hosts and peers it borrows."""

    def __init__(self, tmp_path: Path, node: str, database: str, shared: "HaRouter | None" = None,
                 peers=(), router_extra: str = "", lease_seconds: float = 1.0, settle: float = 2.0,
                 converge_timeout: float = 60.0):
        tmp_path.mkdir(parents=True, exist_ok=True)
        super().__init__(tmp_path, peers=peers if shared is None else (), router_extra=router_extra)
        self.node, self.database, self.shared = node, database, shared
        self.ha = {"enabled": True, "node": node, "lease_seconds": lease_seconds, "settle_seconds": settle,
                   "converge_timeout": converge_timeout}
        if shared is not None:
            self.lab = _Borrowed(shared.lab)
            self.dpid = shared.dpid

    def build(self) -> None:
        if self.shared is None:
            super().build()  # the bridge, the hosts, the router's BIRD file and the peers
        else:
            self.metrics_port = free_tcp_port()
            self.config_path.write_text(yaml.safe_dump(self._config(), sort_keys=False))
            self.bird_dir.mkdir(parents=True, exist_ok=True)
            self.starter = self.taprouter("bird-config", "-c", str(self.config_path),
                                          "--ospf-hello", str(self.ospf_hello)).stdout
            self.write_router_bird(self.router_extra)
        config = yaml.safe_load(self.config_path.read_text())
        config["database"] = self.database
        config["openflow"] = {"listen": f"127.0.0.1:{self.controller_port}"}
        config["ha"] = self.ha
        config["routers"][self.router]["bird"] = {"config": str(self.bird_config)}
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    def _config(self) -> dict:
        return {"openflow": {"listen": f"127.0.0.1:{self.controller_port}"},
                "metrics": {"listen": f"127.0.0.1:{self.metrics_port}"},
                "routers": {self.router: {
                    "dpid": self.dpid, "netns": self.netns,
                    "ports": {n: {"tap": self.taps[n], "addresses": [f"10.0.{n}.1/24", f"2001:db8:{n}::1/64"]}
                              for n in range(1, 4)}}}}

    def start(self, timeout: float = 30, wait: bool = True) -> subprocess.Popen:
        proc = RouterLab.start(self, timeout, wait=False)
        if wait:
            self.wait_role(("master", "standby"), timeout=timeout)
            self.wait_router_bird()
        return proc

    def ha_status(self) -> dict | None:
        status = self.daemon_status()
        return (status or {}).get("ha")

    def role(self) -> str | None:
        ha = self.ha_status()
        return ha["role"] if ha else None

    def wait_role(self, roles, timeout: float = 20) -> str:
        roles = (roles,) if isinstance(roles, str) else tuple(roles)
        return wait_until(lambda: (r := self.role()) in roles and r, timeout=timeout, interval=0.05,
                          message=lambda: f"{self.node} in role {roles}; it is {self.role()}; log:\n"
                                          + self.log_since_start()[-4000:])


class HaPair:
    def __init__(self, tmp_path: Path, cluster, peers=(), router_extra: str = "", **ha) -> None:
        name = f"taprouter_ha_{next(_databases)}_{int(time.time())}"
        cluster.create_database(name)
        self.cluster = cluster
        url = cluster.url(name)
        self.a = HaRouter(tmp_path / "a", "a", url, peers=peers, router_extra=router_extra, **ha)
        self.b = HaRouter(tmp_path / "b", "b", url, shared=self.a, router_extra=router_extra, **ha)

    def build(self) -> None:
        self.a.build()
        self.b.build()
        bridge = self.a.bridge
        targets = [f"tcp:127.0.0.1:{self.a.controller_port}", f"tcp:127.0.0.1:{self.b.controller_port}"]
        run("ovs-vsctl", "--", "--id=@c1", "create", "controller", f"target=\"{targets[0]}\"", "max_backoff=1000",
            "inactivity_probe=5000", "--", "--id=@c2", "create", "controller", f"target=\"{targets[1]}\"",
            "max_backoff=1000", "inactivity_probe=5000", "--", "set", "bridge", bridge, "controller=@c1,@c2")
        # The schema, made once before two daemons would make it at the same moment.
        self.a.taprouter("policy", "list", "-c", str(self.a.config_path))

    def start_both(self) -> None:
        self.a.start(wait=False)
        self.b.start(wait=False)
        for daemon in (self.a, self.b):
            daemon.wait_role(("master", "standby"))
        for daemon in (self.a, self.b):
            daemon.wait_router_bird()

    def master(self) -> HaRouter:
        roles = {d: d.role() for d in (self.a, self.b)}
        masters = [d for d, r in roles.items() if r == "master"]
        assert len(masters) == 1, f"exactly one master expected: {[(d.node, r) for d, r in roles.items()]}"
        return masters[0]

    def other(self, daemon: HaRouter) -> HaRouter:
        return self.b if daemon is self.a else self.a

    def teardown(self) -> list[str]:
        return self.b.teardown() + self.a.teardown()


def ha_pair(request, tmp_path: Path, cluster, **options) -> Iterator[HaPair]:
    """Fixture body: the pair built and both daemons started at once; torn down always."""
    pair = HaPair(tmp_path, cluster, **options)
    request.node._router_lab = pair.a
    problems: list[str] = []
    try:
        pair.build()
        pair.start_both()
        yield pair
    finally:
        problems = pair.teardown()
    if problems:
        import pytest
        pytest.fail("ha pair teardown: " + "; ".join(problems), pytrace=False)


def status_json(daemon: HaRouter) -> dict:
    return json.loads(run(TAPROUTER, "status", "-c", str(daemon.config_path), "--json", env=daemon.env,
                          check=False).stdout)


def switch_roles(pair: HaPair) -> dict[str, str]:
    """Each daemon's role as Open vSwitch itself has it (its Controller records' `role`)."""
    roles = {}
    for daemon in (pair.a, pair.b):
        target = f"tcp:127.0.0.1:{daemon.controller_port}"
        roles[daemon.node] = run("ovs-vsctl", "--bare", "--columns=role", "find", "controller",
                                 f"target=\"{target}\"").stdout.strip()
    return roles
