"""A load the daemon falls behind on goes to the switch in slices, all of it; a withdrawal in one pass.

The daemon is stopped (SIGSTOP, by PID) while the routes enter the kernel, so their events
queue on its netlink socket and reach the reconciler at once: with TAPROUTER_PASS_ROUTES=100,
3000 routes must take 30 passes, each started without a new change to wake the reconciler.

SIGSTOP stops a process's threads only once one of them has taken the signal; on a busy machine
that was seen to take long enough for the daemon to read part of the routes while they went in
(a withdrawal in two passes, a load in two batches), so the test waits until every thread stops.
"""

from __future__ import annotations

import os
import re
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.inject import inject, prefixes  # noqa: E402
from benchmarks.routes import flow_count  # noqa: E402
from taprouter import netns  # noqa: E402
from test_offload import switched  # noqa: E402

ROUTES, SLICE = 3000, 100
PASS = re.compile(r"reconciled \d+ flows, \d+ groups in [\d.]+ ms: (\d+) added, \d+ modified, (\d+) deleted")
TIMES = re.compile(r"in ([\d.]+) ms: .*\(planning ([\d.]+) ms, sending ([\d.]+) ms\)")


def stopped(pid: int) -> bool:
    """Every thread of `pid` stopped (state T in /proc/PID/task/*/stat)."""
    states = []
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        try:
            states.append(stat.read_text().rsplit(")", 1)[1].split()[0])
        except (OSError, IndexError):
            continue  # a thread that ended meanwhile
    return bool(states) and all(state in ("T", "t") for state in states)


def behind(lab, routes, delete: bool = False) -> None:
    """The routes into the kernel while the daemon is stopped, every thread of it."""
    with netns.iproute(lab.netns) as ipr:
        index = ipr.link_lookup(ifname=lab.taps[2])[0]
    os.kill(lab.proc.pid, signal.SIGSTOP)
    try:
        lab.wait_until(lambda: stopped(lab.proc.pid), timeout=10, interval=0.005,
                       message="every thread of the daemon stopped")
        inject(lab.netns, index, "10.0.2.2", routes, delete=delete)
    finally:
        os.kill(lab.proc.pid, signal.SIGCONT)


def passes(lab, offset: int) -> list[tuple[int, int]]:
    return [(int(m[1]), int(m[2])) for m in PASS.finditer(lab.log_text()[offset:])]


def test_a_load_behind_the_daemon_goes_in_slices_and_its_withdrawal_in_one_pass(router_lab, wait_until):
    lab = router_lab
    lab.stop()
    lab.env["TAPROUTER_PASS_ROUTES"] = str(SLICE)
    lab.start()
    # The gateway resolved first: its resolving later would make a pass look at every route.
    lab.assert_ping(lab.host(1), "10.0.2.2")
    wait_until(lambda: switched(lab, "10.0.2.2"), timeout=10,
               message=lambda: f"a host entry with a group for 10.0.2.2:\n{lab.dump_flows()}")
    base = flow_count(lab.bridge)
    routes = list(prefixes(ROUTES))
    offset = len(lab.log_text())
    behind(lab, routes)
    wait_until(lambda: flow_count(lab.bridge) == base + ROUTES, timeout=60,
               message=lambda: f"route flows: {flow_count(lab.bridge) - base} of {ROUTES}")
    added = [a for a, _ in passes(lab, offset) if a]
    assert sum(added) == ROUTES and max(added) == SLICE and len(added) >= ROUTES // SLICE, added

    offset = len(lab.log_text())
    behind(lab, routes, delete=True)
    wait_until(lambda: flow_count(lab.bridge) == base, timeout=60,
               message=lambda: f"route flows left: {flow_count(lab.bridge) - base}")
    deleted = [d for _, d in passes(lab, offset) if d]
    assert deleted == [ROUTES], deleted
    # Each pass's log line splits its time between planning and sending to the switch.
    times = [tuple(map(float, m.groups())) for m in TIMES.finditer(lab.log_text())]
    assert len(times) >= len(added) + 1, times
    assert all(plan + write <= total + 0.2 and plan > 0 for total, plan, write in times), times
