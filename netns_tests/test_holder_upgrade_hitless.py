"""An upgrade as it happens on a host: the TAP holder left running is the previous taprouter's
(protocol 1: tests/holder_v1.py, the file as commit 36ab1ed shipped it), holding the router's real
TAPs, and this daemon starts against it. It hands the TAPs to a new holder without closing them:
h1 pings h2 at 100 packets per second throughout and loses none, the TAPs keep carrier, and the new
daemon changes nothing on the switch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from taprouter.bridge import holder
from taprouter.bridge.holder import HolderClient, pid_alive
from test_hitless_restart import INTERVAL, PAIRS, assert_reconciled_nothing, ping_result, warm_up

OLD = Path(__file__).resolve().parent.parent / "tests" / "holder_v1.py"
COUNT = 1000


def carrier(lab) -> dict[str, bool]:
    links = json.loads(lab.in_router("ip", "-j", "link", "show").stdout)
    return {link["ifname"]: "NO-CARRIER" not in link["flags"]
            for link in links if link["ifname"] in lab.taps.values()}


def swap_in_old_holder(lab) -> int:
    """Make the running (current) holder's TAPs the old holder's, as after an upgrade of the
    package with the old holder still running; returns the old holder's pid."""
    run_dir = lab.router_dir
    current = HolderClient(run_dir)
    side = run_dir / "holder.sock.v1"
    old = subprocess.Popen([sys.executable, str(OLD), str(side)], start_new_session=True)
    deadline = time.monotonic() + 5
    while not side.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    fds = current.get()
    try:
        for name, fd in fds.items():
            HolderClient(run_dir, side.name).put(name, fd)
    finally:
        for fd in fds.values():
            os.close(fd)
    assert current.quit()
    os.replace(side, run_dir / "holder.sock")
    (run_dir / "holder.pid").write_text(f"{old.pid}\n")
    return old.pid


def test_daemon_upgrades_an_old_holder_without_a_lost_packet(router_lab):
    lab = router_lab
    warm_up(lab, ("ipv4",))
    assert all(carrier(lab).values())
    first_holder = int((lab.router_dir / "holder.pid").read_text())
    dst = PAIRS["ipv4"][1]
    ping = lab.host(1).popen("ping", "-n", "-q", "-i", str(INTERVAL), "-c", str(COUNT), "-W", "1", dst,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    old_pid = None
    try:
        time.sleep(1)
        lab.stop()
        old_pid = swap_in_old_holder(lab)
        assert not pid_alive(first_holder)
        assert HolderClient(lab.router_dir).ping() == (old_pid, 1)
        assert all(carrier(lab).values()), f"carrier lost while handing the TAPs to the old holder: {carrier(lab)}"

        lab.start()
        assert ping.poll() is None, "ping ended before the daemon was back; the test proved nothing"
        sent, received, out = ping_result(ping, timeout=COUNT * INTERVAL + 30)
    finally:
        if ping.poll() is None:
            ping.kill()
            ping.wait(timeout=10)
        if old_pid is not None and pid_alive(old_pid):
            os.kill(old_pid, 9)

    log = lab.log_since_start()
    assert "TAP holder upgraded from protocol 1" in log, log[-3000:]
    new_pid, version = HolderClient(lab.router_dir).ping()
    assert version == holder.PROTOCOL and new_pid not in (old_pid, first_holder)
    assert not pid_alive(old_pid), "the old holder did not quit"
    assert all(carrier(lab).values()), carrier(lab)
    assert sent == COUNT and received == sent, f"{sent - received} of {sent} pings lost:\n{out}"
    assert_reconciled_nothing(log, "upgraded")
