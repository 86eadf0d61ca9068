"""`taprouter reload` (and SIGHUP) re-read the config file: a port and an address added by editing
the file come up and answer pings; traffic on the ports the reload leaves alone loses nothing at
100 pps; a file unchanged sees no flow change; a removed port takes its TAP and flows with it; a
broken file, or one that changes what only a restart can, changes nothing."""

from __future__ import annotations

import signal
import subprocess
import time

import yaml

from routerlab import RouterLab, running_lab
from test_hitless_restart import ping_result, reconciles, warm_up

import pytest

LATE = 3  # the port the file leaves out at start
COUNT = 500
INTERVAL = 0.01  # 100 pps
NEW_ADDRESS = "10.0.11.1"


class ReloadLab(RouterLab):
    """The usual lab, port 3 on the switch but not yet in the config file."""

    def build(self) -> None:
        super().build()
        data = self.config()
        self.full_ports = data["routers"][self.router]["ports"]
        data["routers"][self.router]["ports"] = {n: p for n, p in self.full_ports.items() if n != LATE}
        self.write(data)

    def config(self) -> dict:
        return yaml.safe_load(self.config_path.read_text())

    def write(self, data: dict) -> None:
        self.config_path.write_text(yaml.safe_dump(data, sort_keys=False))

    def punt_flows_installed(self) -> bool:
        return self.punt_flows_for([n for n in self.taps if n != LATE])

    def reload(self, check: bool = True) -> subprocess.CompletedProcess:
        return self.taprouter("reload", "-c", str(self.config_path), check=check)

    def flow_set(self) -> set[tuple]:
        """The switch's flows without their counters: what a reload must not touch."""
        return {(f.table, f.priority, f.cookie, tuple(sorted(f.match.items())), f.actions) for f in self.flows()}

    def tap_exists(self, port: int) -> bool:
        return self.in_router("ip", "link", "show", self.taps[port], check=False).returncode == 0


@pytest.fixture
def reload_lab(request, tmp_path, ovs):
    yield from running_lab(request, ReloadLab(tmp_path), "reload_lab")


def pinging(lab, dst: str) -> subprocess.Popen:
    return lab.host(1).popen("ping", "-n", "-q", "-i", str(INTERVAL), "-c", str(COUNT), "-W", "1", dst,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def assert_no_loss(proc: subprocess.Popen) -> None:
    sent, received, out = ping_result(proc, timeout=COUNT * INTERVAL + 30)
    assert sent == COUNT and received == sent, f"{sent - received} of {sent} pings lost during the reload:\n{out}"


def test_reload_adds_a_port_and_an_address_and_leaves_the_rest_alone(reload_lab):
    lab = reload_lab
    assert not lab.tap_exists(LATE)
    warm_up(lab, ("ipv4",))
    time.sleep(1)  # the last pass of the warm-up is out

    # -- the same file: nothing at all changes ---------------------------------------------
    before = lab.flow_set()
    mark = lab.log_path.stat().st_size
    ping = pinging(lab, "10.0.2.2")
    try:
        time.sleep(1)
        result = lab.reload()
        assert "no change to ports or addresses" in result.stdout, result.stdout + result.stderr
        time.sleep(1.5)
        assert ping.poll() is None, "ping ended before the reload was done; the test proved nothing"
    finally:
        assert_no_loss(ping)
    assert lab.flow_set() == before
    assert reconciles(lab.log_text(mark)) == [], lab.log_text(mark)

    # -- port 3 and a second address on port 1 ---------------------------------------------
    data = lab.config()
    ports = data["routers"][lab.router]["ports"]
    ports[LATE] = lab.full_ports[LATE]
    ports[1]["addresses"].append(f"{NEW_ADDRESS}/24")
    lab.write(data)
    mark = lab.log_path.stat().st_size
    ping = pinging(lab, "10.0.2.2")
    try:
        time.sleep(1)
        result = lab.reload()
        time.sleep(1.5)
        assert ping.poll() is None, "ping ended before the reload was done; the test proved nothing"
    finally:
        assert_no_loss(ping)
    assert f"port {LATE} ({lab.taps[LATE]}) added" in result.stdout, result.stdout
    assert f"+{NEW_ADDRESS}/24" in result.stdout, result.stdout
    lab.wait_log(rf"TAP \S+ opened for port {LATE}", since=mark)
    lab.wait_until(lambda: lab.punt_flows_for(list(lab.taps)), timeout=10,
                   message=lambda: "punt flows for port 3:\n" + lab.dump_flows())
    lab.assert_ping(lab.host(LATE), "10.0.3.1", count=3)
    lab.assert_ping(lab.host(LATE), "2001:db8:3::1", count=3)
    lab.assert_ping(lab.host(LATE), "10.0.1.2", count=3)  # routed on, both ways
    lab.assert_ping(lab.host(1), NEW_ADDRESS, count=3)
    # What the reload left alone kept its flows: only flows were added.
    changed = [r for r in reconciles(lab.log_text(mark)) if r[3] or r[4]]
    assert not changed, f"the reload modified or deleted flows: {reconciles(lab.log_text(mark))}"
    assert before <= lab.flow_set(), f"flows gone or changed: {before - lab.flow_set()}"

    # -- port 3 out again: its TAP and its flows go ----------------------------------------
    data = lab.config()
    del data["routers"][lab.router]["ports"][LATE]
    lab.write(data)
    result = lab.reload()
    assert f"port {LATE} ({lab.taps[LATE]}) removed" in result.stdout, result.stdout
    assert not lab.tap_exists(LATE)
    lab.wait_until(lambda: not [f for f in lab.flows() if f.match.get("in_port") == str(LATE)
                                or f"output:{LATE}" in f.actions or "10.0.3." in f.line], timeout=10,
                   message=lambda: "flows of port 3 left:\n" + lab.dump_flows())
    lab.assert_ping(lab.host(1), "10.0.2.2", count=3)


def test_a_broken_file_or_one_that_needs_a_restart_changes_nothing(reload_lab):
    lab = reload_lab
    good = lab.config_path.read_text()
    before = lab.flow_set()

    # SIGHUP with a file that fails validation: the daemon logs why, and changes nothing.
    data = lab.config()
    data["routers"][lab.router]["ports"][LATE] = {"tap": lab.taps[LATE], "addresses": ["10.0.1.7/24"]}
    lab.write(data)  # 10.0.1.7/24 overlaps port 1's subnet
    mark = lab.log_path.stat().st_size
    lab.proc.send_signal(signal.SIGHUP)
    lab.wait_log(r"reload refused, nothing changed: .*overlaps", since=mark)
    result = lab.reload(check=False)
    assert result.returncode == 2 and "overlaps" in result.stderr, result.stdout + result.stderr

    # A change only a restart can make: refused whole, the port in the same file not added either.
    data["routers"][lab.router]["ports"][LATE] = lab.full_ports[LATE]
    data["database"] = f"sqlite:///{lab.tmp_path / 'other.db'}"
    lab.write(data)
    result = lab.reload(check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "database: changed" in result.stderr and "nothing changed" in result.stderr, result.stderr

    time.sleep(1)
    assert not lab.tap_exists(LATE)
    assert lab.flow_set() == before
    assert reconciles(lab.log_text(mark)) == [], lab.log_text(mark)
    assert lab.daemon_alive()
    lab.config_path.write_text(good)
    assert "no change" in lab.reload().stdout
    mark = lab.log_path.stat().st_size
    lab.proc.send_signal(signal.SIGHUP)  # a good file through SIGHUP too
    lab.wait_log(r"reload: \S+: no change to ports or addresses", since=mark)
