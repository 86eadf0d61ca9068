"""`taprouter reload` adds and removes a router while the daemon runs (netns_tests/manylab.py: two
Open vSwitch bridges, each its own router with BIRD and two hosts, one daemon).

The daemon starts with router 0 only; switch 1 already points at it and is connected, ignored.
Router 1 added to the file and reloaded: its netns, TAPs, holder and BIRD come up, its switch
(taken at once) gets its flows and routes h1 to h2. Removed again: its switch is emptied of every
flow, group and meter of ours (routing stops there), its BIRD, holder, TAPs, netns and run files
go, as `taprouter down` would remove them. Added once more, it routes again on the same switch;
then `reload --router R` removes it alone.
All the while router 0 pings h1 to h2 at 100 pps and loses nothing, its switch's flows are the
same (counters aside) and the daemon logs no pass that changed anything on it.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest
import yaml

import ofctl
from manylab import ManyLab, PingTally
from routerlab import REPO, TAPROUTER, netns_list, pid_alive, wait_until

RATE = 100  # pps
KEPT, MOVED = 0, 1  # router 0 stays; router 1 is added and removed
OURS = 0x7A70 << 48
RECONCILE = re.compile(r"router (\S+): reconciled \d+ flows, \d+ groups in [\d.]+ ms: (\d+) added, "
                       r"(\d+) modified, (\d+) deleted, (\d+) group changes")


class RosterLab(ManyLab):
    """Two routers, the file holding only those in `running`."""

    def build(self) -> None:
        super().build()
        self.full = yaml.safe_load(self.config_path.read_text())

    def write(self, running: list[int]) -> None:
        data = yaml.safe_load(yaml.safe_dump(self.full))
        data["routers"] = {name: r for i, (name, r) in enumerate(self.full["routers"].items()) if i in running}
        self.config_path.write_text(yaml.safe_dump(data, sort_keys=False))

    def reload(self):
        return self.taprouter("reload", "-c", str(self.config_path), timeout=90)

    def start_with(self, i: int, timeout: float = 60) -> None:
        """The daemon, with router i alone in the file (ManyLab.start waits for every router)."""
        with open(self.log_path, "ab") as log:
            self._log_offset = log.tell()
            self.proc = subprocess.Popen([str(TAPROUTER), "run", "-c", str(self.config_path)], cwd=REPO,
                                         env=self.env, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        self.ready(i, timeout)

    def ready(self, i: int, timeout: float = 60) -> None:
        wait_until(lambda: self.punt_flows_installed(i), timeout=timeout,
                   message=lambda: f"punt flows on {self.labs[i].bridge}:\n{self.dump_flows(i)}")
        wait_until(lambda: self.bird_pids().get(self.routers[i]), timeout=timeout, interval=0.3,
                   message=lambda: f"BIRD of {self.routers[i]} running: {self.bird_pids()}")
        self._remember_pids()

    def flow_set(self, i: int) -> set[tuple]:
        return {(f.table, f.priority, f.cookie, tuple(sorted(f.match.items())), f.actions)
                for f in ofctl.parse_flows(self.dump_flows(i))}

    def ours_left(self, i: int) -> dict[str, int]:
        bridge = self.labs[i].bridge
        flows = [f for f in ofctl.parse_flows(self.dump_flows(i)) if f.cookie & (0xFFFF << 48) == OURS]
        meters = [line for line in ofctl.ofctl("dump-meters", bridge).splitlines() if "meter=" in line]
        return {"flows": len(flows), "groups": len(ofctl.groups(bridge)), "meters": len(meters)}

    def router_pids(self, i: int) -> dict[str, int | None]:
        out = {}
        for name in ("holder.pid", "bird.pid"):
            try:
                out[name] = int((self.router_dir(i) / name).read_text().split()[0])
            except (OSError, ValueError, IndexError):
                out[name] = None
        return out


@pytest.fixture
def lab(tmp_path, ovs):
    lab = RosterLab(tmp_path, count=2)
    problems: list[str] = []
    try:
        lab.build()
        lab.write([KEPT])
        lab.start_with(KEPT)
        result = lab.ping_once(KEPT)
        assert result.returncode == 0, result.stdout + result.stderr
        yield lab
    except Exception:
        print(f"daemon log (tail):\n{lab.log_text()[-20000:]}", file=sys.stderr)
        raise
    finally:
        lab.write([KEPT, MOVED])  # `taprouter down` in the teardown then removes whatever is left
        problems = lab.teardown()
    assert not problems, "teardown: " + "; ".join(problems)


def changes_on(lab: RosterLab, name: str, since: int) -> list[tuple[int, ...]]:
    return [tuple(int(x) for x in m.groups()[1:]) for m in RECONCILE.finditer(lab.log_text(since))
            if m.group(1) == name and any(int(x) for x in m.groups()[1:])]


def pinging(lab: RosterLab):
    return lab.pinger(KEPT, RATE)


def assert_no_loss(tally: PingTally, what: str, least: int) -> None:
    print(f"router {KEPT} during {what}: {len(tally.received)} of {tally.sent} pings answered "
          f"({tally.sent - tally.last} in flight at the end), lost: {tally.lost}")
    assert tally.last >= least, f"only {tally.last} pings answered during {what}"
    assert tally.sent - tally.last <= 3, f"the last {tally.sent - tally.last} pings went unanswered"
    assert not tally.lost, f"{len(tally.lost)} pings lost during {what} (seq {tally.lost[:20]})"


def test_a_router_added_then_removed_leaves_the_other_alone(lab):
    kept, moved = lab.routers[KEPT], lab.routers[MOVED]
    assert moved not in netns_list() and lab.ours_left(MOVED)["flows"] == 0
    before = lab.flow_set(KEPT)

    # -- added -------------------------------------------------------------------------------
    ping = pinging(lab)
    try:
        time.sleep(1)
        mark = lab.log_size()
        lab.write([KEPT, MOVED])
        started = time.monotonic()
        result = lab.reload()
        lab.ready(MOVED)
        took_add = time.monotonic() - started
        answer = lab.ping_once(MOVED)
        time.sleep(1)
        assert ping.proc.poll() is None, "the ping ended before the reload was done"
    finally:
        tally = ping.stop()
    print(f"router added: reload answered and the router routed in {took_add:.1f} s")
    assert f"router {moved}: added" in result.stdout, result.stdout + result.stderr
    assert "its switch is connected already" in lab.log_text(mark), lab.log_text(mark)[-4000:]
    assert answer.returncode == 0, f"router {moved} after the reload: {answer.stdout}{answer.stderr}"
    assert moved in netns_list() and all(lab.router_pids(MOVED).values())
    assert_no_loss(tally, "the add", least=RATE)
    assert changes_on(lab, kept, mark) == [], lab.log_text(mark)
    assert lab.flow_set(KEPT) == before
    pids = lab.router_pids(MOVED)

    # -- removed -----------------------------------------------------------------------------
    ping = pinging(lab)
    try:
        time.sleep(1)
        mark = lab.log_size()
        lab.write([KEPT])
        started = time.monotonic()
        result = lab.reload()
        took_remove = time.monotonic() - started
        time.sleep(1)
        assert ping.proc.poll() is None, "the ping ended before the reload was done"
    finally:
        tally = ping.stop()
    print(f"router removed: reload answered in {took_remove:.1f} s")
    out = result.stdout
    assert f"router {moved}: removed" in out and "emptied of the router's flows, groups and meters" in out, out
    assert lab.ours_left(MOVED) == {"flows": 0, "groups": 0, "meters": 0}, lab.dump_flows(MOVED)
    assert moved not in netns_list()
    assert not any(pid_alive(pid) for pid in pids.values() if pid), pids
    assert not lab.router_dir(MOVED).exists(), list(lab.router_dir(MOVED).iterdir())
    assert lab.ping_once(MOVED).returncode != 0, "the emptied switch still routes"
    assert_no_loss(tally, "the removal", least=RATE)
    assert changes_on(lab, kept, mark) == [], lab.log_text(mark)
    assert lab.flow_set(KEPT) == before
    status = lab.status()
    assert set(status) == {kept} and status[kept]["switch"]["connected"] is True

    # -- added again: the same switch, still connected, is taken at once ---------------------
    mark = lab.log_size()
    lab.write([KEPT, MOVED])
    assert f"router {moved}: added" in lab.reload().stdout
    lab.ready(MOVED)
    assert lab.ping_once(MOVED).returncode == 0
    assert changes_on(lab, kept, mark) == []

    # -- removed alone: `reload --router R` for a router the file no longer has ---------------
    lab.write([KEPT])
    result = lab.taprouter("reload", "-c", str(lab.config_path), "--router", moved, timeout=90)
    assert f"router {moved}: removed" in result.stdout, result.stdout + result.stderr
    assert lab.ours_left(MOVED) == {"flows": 0, "groups": 0, "meters": 0}
    assert moved not in netns_list()
    assert changes_on(lab, kept, mark) == [] and lab.flow_set(KEPT) == before
    assert lab.daemon_alive()
