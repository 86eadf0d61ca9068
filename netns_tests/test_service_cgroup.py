"""`systemctl restart taprouter`, as the kernel sees it: systemd kills every process in the unit's
cgroup. There is no systemd as PID 1 here, so this test does the same with a real cgroup v2
directory: the daemon starts inside a "unit" cgroup, its TAP holder and BIRD are placed in another
($TAPROUTER_KEEP_CGROUP; under systemd the daemon uses a `systemd-run --scope` instead), then every
process in the unit's cgroup is SIGKILLed through cgroup.kill. The holder and BIRD live on, the BGP
session never flaps, and the new daemon, started in the same cgroup, changes nothing on the switch."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

import birdlab
from test_hitless_restart import assert_reconciled_nothing

HOLD, KEEPALIVE = 30, 1
NET = "10.31.0.0/24"
PEER = birdlab.bgp_peer(port=3, asn=65003, routes=[NET], hold=HOLD, keepalive=KEEPALIVE,
                        lo_addresses=["10.31.0.1/24"])


def cgroup2_root() -> Path | None:
    with open("/proc/self/mounts") as f:
        for line in f:
            fields = line.split()
            if fields[2] == "cgroup2" and os.access(fields[1], os.W_OK):
                return Path(fields[1])
    return None


def own_cgroup(root: Path) -> Path:
    with open("/proc/self/cgroup") as f:
        for line in f:
            if line.startswith("0::"):
                return root / line.strip()[3:].lstrip("/")
    raise AssertionError("no cgroup v2 line in /proc/self/cgroup")


def procs(cgroup: Path) -> set[int]:
    return {int(p) for p in (cgroup / "cgroup.procs").read_text().split()}


class UnitLab(birdlab.BirdLab):
    """A BIRD lab whose daemon starts in `unit` (as systemd would start it) and keeps its holder
    and BIRD in `keep`."""

    unit: Path
    home: Path

    def start(self, timeout: float = 30):
        (self.unit / "cgroup.procs").write_text(f"{os.getpid()}\n")
        try:
            # The daemon inherits the unit's cgroup from us, as a unit's main process does.
            return super().start(timeout)
        finally:
            (self.home / "cgroup.procs").write_text(f"{os.getpid()}\n")


@pytest.fixture
def cgroups():
    root = cgroup2_root()
    if root is None:
        pytest.skip("no writable cgroup v2 hierarchy")
    tag = f"trsvc-{uuid.uuid4().hex[:8]}"
    unit, keep = root / f"{tag}-unit", root / f"{tag}-keep"
    unit.mkdir()
    keep.mkdir()
    if not (unit / "cgroup.kill").exists():
        unit.rmdir()
        keep.rmdir()
        pytest.skip("this kernel's cgroup v2 has no cgroup.kill (5.14 or later has)")
    home = own_cgroup(root)
    try:
        yield unit, keep, home
    finally:
        for group in (unit, keep):
            # The lab's teardown ended its processes by pid; move any straggler out so rmdir works.
            for pid in procs(group):
                try:
                    (home / "cgroup.procs").write_text(f"{pid}\n")
                except OSError:
                    pass
            group.rmdir()


@pytest.fixture
def lab(request, tmp_path, ovs, cgroups):
    unit, keep, home = cgroups
    the_lab = UnitLab(tmp_path, peers=[PEER], router_extra=birdlab.router_bgp(
        peer_port=3, peer_as=65003, hold=HOLD, keepalive=KEEPALIVE))
    the_lab.unit, the_lab.home = unit, home
    the_lab.env["TAPROUTER_KEEP_CGROUP"] = str(keep)
    yield from birdlab.running_lab(request, the_lab, "service cgroup lab")


def test_killing_the_units_cgroup_spares_holder_and_bird(lab, cgroups):
    unit, keep, _ = cgroups
    session = lab.wait_protocol("peer3", "Established", timeout=30)
    lab.wait_fib_group_flow(NET)
    bird_pid = lab.bird()["pid"]
    holder_pid = int((lab.router_dir / "holder.pid").read_text())
    daemon_pid = lab.proc.pid

    assert daemon_pid in procs(unit)
    assert {holder_pid, bird_pid} <= procs(keep), (procs(unit), procs(keep))
    assert not {holder_pid, bird_pid} & procs(unit)

    (unit / "cgroup.kill").write_text("1")  # what systemd does to a unit's cgroup on restart
    assert lab.proc.wait(timeout=10) == -9
    assert procs(unit) == set()
    assert lab.pid_alive(holder_pid), "the TAP holder died with the unit's cgroup"
    assert lab.pid_alive(bird_pid), "BIRD died with the unit's cgroup"

    lab.start()
    assert lab.proc.pid in procs(unit)
    log = lab.log_since_start()
    assert f"adopted BIRD (pid {bird_pid})" in log, log
    assert_reconciled_nothing(log, "restarted")
    assert int((lab.router_dir / "holder.pid").read_text()) == holder_pid
    p = lab.wait_protocol("peer3", "Established", timeout=30)
    assert birdlab.same_instant(p["since"], session["since"]), (p, session)
    lab.assert_switched(lab.host(1), "10.31.0.1", NET)
