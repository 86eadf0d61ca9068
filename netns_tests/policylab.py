"""Policies on a real switch: a RouterLab whose database is a SQLite file or a database in a
throwaway PostgreSQL cluster, driven through the real `taprouter policy` commands, and what the
switch (its policy table), the store (`policy list --json`) and the daemon (`/v1/policies`) say.

The fixtures are in conftest.py: `policy_lab` (SQLite unless parametrized indirectly, see
`both_backends`) and the session's `pg_cluster`.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

import ofctl
from routerlab import PYTHON, RouterLab, free_tcp_port, run
from taprouter.control.client import ControlClient
from taprouter.controller.openflow.pipeline import Table, policy_cookie

BACKENDS = ("sqlite", "postgresql")
# Runs a test once on each backend: `@both_backends` above a test that takes `policy_lab`.
both_backends = pytest.mark.parametrize("policy_lab", BACKENDS, indirect=True)

RECONCILE = re.compile(r"reconciled (\d+) flows, (\d+) groups in [\d.]+ ms: (\d+) added, (\d+) modified, "
                       r"(\d+) deleted, (\d+) group changes")


@dataclass(frozen=True)
class Reconcile:
    """One `reconciled ...` line of the daemon's log."""

    flows: int
    groups: int
    added: int
    modified: int
    deleted: int
    group_changes: int

    @property
    def changed(self) -> bool:
        return bool(self.added or self.modified or self.deleted or self.group_changes)


def reconciles(log: str) -> list[Reconcile]:
    return [Reconcile(*(int(x) for x in m.groups())) for m in RECONCILE.finditer(log)]


class PolicyLab(RouterLab):
    """RouterLab with its policies in `backend`'s database (PostgreSQL: a database of its own in
    the session's cluster)."""

    def __init__(self, tmp_path: Path, backend: str = "sqlite", cluster=None):
        super().__init__(tmp_path)
        self.backend = backend
        self.cluster = cluster
        self.sqlite_path = tmp_path / "taprouter.db"
        self.pg_database = f"{self.prefix}db"
        self.dead_port = free_tcp_port()  # where `disconnect` points the switch: nobody listens there

    def build(self) -> None:
        super().build()
        if self.backend == "sqlite":
            url = f"sqlite:///{self.sqlite_path}"
        else:
            self.cluster.create_database(self.pg_database)
            url = self.cluster.url(self.pg_database)
        config = yaml.safe_load(self.config_path.read_text())
        config["database"] = url
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    # -- the commands -----------------------------------------------------------------------

    def policy(self, verb: str, name: str, *flags: str, check: bool = True) -> subprocess.CompletedProcess:
        """`taprouter policy VERB -c CONFIG --router R --name NAME FLAGS...` as an operator runs it."""
        result = self.taprouter("policy", verb, "-c", str(self.config_path), "--router", self.router,
                                "--name", name, *flags, check=False)
        if check:
            assert result.returncode == 0, (f"policy {verb} {name} {' '.join(flags)} exited {result.returncode}:\n"
                                            f"{result.stdout}{result.stderr}\n{self.explain()}")
            # The command waits until the switch took the change; saying it did not is a failure here.
            assert "not confirmed" not in result.stderr and "warning" not in result.stderr, result.stderr
        return result

    def add(self, name: str, *flags: str) -> int:
        """Add a policy; returns its id (its flows' cookies carry it)."""
        out = self.policy("add", name, *flags).stdout
        found = re.search(r"\(id (\d+)\)", out)
        assert found, f"policy add printed no id: {out!r}"
        return int(found.group(1))

    def listed(self) -> dict[str, dict]:
        """`policy list --json`, by name: what the store holds, with the state the daemon wrote."""
        out = self.taprouter("policy", "list", "-c", str(self.config_path), "--router", self.router,
                             "--json").stdout
        return {item["name"]: item for item in json.loads(out)}

    def served(self) -> dict[str, dict]:
        """The daemon's `/v1/policies`, by name."""
        answer = ControlClient(self.run_dir / "control.sock").get("/v1/policies", router=self.router)
        return {item["name"]: item for item in answer}

    def wait_state(self, name: str, state: str, timeout: float = 10, where: str = "both") -> dict:
        """Wait until the store (`policy list --json`) and/or the daemon (`/v1/policies`) show the
        policy in `state`; returns the store's entry (the daemon's if only it was asked)."""
        def seen():
            found = {}
            if where in ("both", "list"):
                found["list"] = self.listed().get(name)
            if where in ("both", "api"):
                found["api"] = self.served().get(name)
            if all(item is not None and item["state"] == state for item in found.values()):
                return found.get("list") or found["api"]
            return None

        return self.wait_until(seen, timeout=timeout, message=lambda: (
            f"policy {name} {state} ({where}); policy list: {self.listed().get(name)}; "
            f"/v1/policies: {self.served().get(name)}\n{self.explain()}"))

    # -- the switch -------------------------------------------------------------------------

    def policy_flows(self, policy_id: int) -> list[ofctl.Flow]:
        """The policy table's flows carrying this policy's cookie."""
        cookie = policy_cookie(policy_id)
        return [f for f in self.flows(Table.POLICY) if f.cookie == cookie]

    def wait_flows(self, policy_id: int, present: bool, timeout: float = 10) -> list[ofctl.Flow]:
        """Wait until the switch holds the policy's flows (or holds none of them)."""
        def check():
            flows = self.policy_flows(policy_id)
            return (flows or None) if present else (not flows)

        found = self.wait_until(check, timeout=timeout, message=lambda: (
            f"flows of policy {policy_id} {'on' if present else 'off'} the switch\n{self.explain()}"))
        return found if present else []

    def counted(self, policy_id: int, at_least: int, timeout: float = 5) -> int:
        """The packets the policy's flows counted, once at least `at_least`: Open vSwitch's userspace
        datapath adds its cached flows' counts to the OpenFlow flows only every half second or so."""
        return self.wait_until(lambda: (n := sum(f.n_packets for f in self.policy_flows(policy_id))) >= at_least
                               and n, timeout=timeout,
                               message=lambda: f"policy {policy_id} counting {at_least} packets\n{self.explain()}")

    def explain(self) -> str:
        """The policy table and the daemon's log tail, for failure messages."""
        log = "\n".join(line for line in self.log_since_start().splitlines()
                        if not re.search(r" DEBUG +(pyroute2|asyncio)", line))
        return (f"--- policy table of {self.bridge}:\n{self.dump_flows(Table.POLICY)}"
                f"--- daemon log (tail):\n{log[-3000:]}")

    def disconnect(self) -> None:
        """Point the switch at a port nobody listens on: it drops the daemon and keeps its flows
        (fail mode secure). `reconnect` points it back."""
        run("ovs-vsctl", "set", "controller", self.bridge, f'target="tcp:127.0.0.1:{self.dead_port}"')

    def reconnect(self) -> None:
        run("ovs-vsctl", "set", "controller", self.bridge, f'target="tcp:127.0.0.1:{self.controller_port}"')

    def switch_connected(self) -> bool:
        return run("ovs-vsctl", "get", "controller", self.bridge, "is_connected").stdout.strip() == "true"

    # -- the database behind the daemon's back ----------------------------------------------

    def sql(self, statement: str) -> str:
        """Run plain SQL with the backend's own client (sqlite3, psql): no taprouter code involved."""
        if self.backend == "sqlite":
            return run("sqlite3", "-cmd", ".timeout 5000", str(self.sqlite_path), statement).stdout
        return run("psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(self.cluster.socket_dir),
                   "-U", "taprouter", "-d", self.pg_database, "-c", statement).stdout

    # -- the hosts --------------------------------------------------------------------------

    def assert_ping_fails(self, host, address: str, count: int) -> None:
        """Exactly `count` echo requests go out, and none is answered."""
        result = self.ping(host, address, count=count, deadline=None)
        assert result.returncode != 0 and f"{count} packets transmitted, 0 received" in result.stdout, (
            f"ping {host.name} -> {address} got through:\n{result.stdout}{result.stderr}\n{self.explain()}")

    def pin_neighbours(self) -> None:
        """Make the router's neighbour entries permanent (same MACs): while no daemon relays frames,
        a neighbour the kernel happens to probe fails and comes back, a kernel change the switch
        rightly follows; a test of 'nothing changed' must keep that churn out."""
        for entry in self.router_neighbours():
            if entry.get("lladdr") and "PERMANENT" not in entry.get("state", []):
                self.in_router("ip", "neigh", "replace", entry["dst"], "dev", entry["dev"], "lladdr",
                               entry["lladdr"], "nud", "permanent")

    def pin_host_gateways(self, *hosts) -> None:
        """Make each host's neighbour entries permanent: a host's entry for its gateway, learnt from
        the router's own ARP moments ago, is confirmed by a unicast probe some 5 s after first use;
        with no daemon to answer it, the entry fails and the host stops sending. A test of what
        the switch does alone must not hang on that."""
        for host in hosts:
            for entry in json.loads(host.run("ip", "-j", "neigh", "show") or "[]"):
                if entry.get("lladdr") and "PERMANENT" not in entry.get("state", []):
                    host.run("ip", "neigh", "replace", entry["dst"], "dev", entry["dev"], "lladdr",
                             entry["lladdr"], "nud", "permanent")

    def udp_flood(self, host, dst: str, port: int, rate: float, seconds: float, size: int = 18) -> dict:
        """Send UDP datagrams of `size` bytes from a host at `rate` per second for `seconds`;
        returns {"sent", "errors", "elapsed"}."""
        code = FLOOD.format(dst=dst, port=port, rate=rate, seconds=seconds, size=size)
        return json.loads(run(PYTHON, "-c", code, netns=host.name, timeout=seconds + 30).stdout)


FLOOD = """
import json, socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
payload, addr, rate = b"x" * {size}, ("{dst}", {port}), {rate}
sent = errors = 0
t0 = time.monotonic()
while True:
    now = time.monotonic()
    if now - t0 >= {seconds}:
        break
    while sent < int((now - t0) * rate) + 1:
        try:
            s.sendto(payload, addr)
            sent += 1
        except OSError:
            errors += 1
            break
    time.sleep(0.0005)
print(json.dumps({{"sent": sent, "errors": errors, "elapsed": time.monotonic() - t0}}))
"""


class Capture:
    """tcpdump on a host's eth0 while a block runs: the lines it printed, one a packet.

    Started by this test and stopped by its PID (`ip netns exec` execs tcpdump in place)."""

    def __init__(self, host, expression: str, directory: Path):
        self.host = host
        self.expression = expression
        self.out = directory / f"capture-{host.name}-{time.monotonic_ns()}.txt"
        self.err = self.out.with_suffix(".err")
        self.proc: subprocess.Popen | None = None
        self.lines: list[str] = []

    def __enter__(self) -> "Capture":
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.proc = self.host.popen("tcpdump", "-n", "-l", "-i", "eth0", *self.expression.split(),
                                        stdout=out, stderr=err)
        deadline = time.monotonic() + 10
        while "listening on" not in self.err.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"tcpdump in {self.host.name} did not start: {self.err.read_text()}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.lines = [line for line in self.out.read_text().splitlines() if line.strip()]

    def __exit__(self, *exc) -> None:
        time.sleep(0.3)  # the last frames' way through the switch
        self.stop()
