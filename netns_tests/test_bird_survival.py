"""BIRD survives: taprouter restarts a BIRD that died under it, and a taprouter restart (SIGTERM or
kill -9) leaves BIRD running, adopted by the new daemon, with its BGP session never flapping."""

from __future__ import annotations

import os
import signal
import time

import pytest

import birdlab

# While no daemon runs, nothing relays the TAPs' frames: BGP's keepalives wait in TCP
# retransmissions. A restart must end within the hold time, and it can take ~10 s (Open vSwitch
# backs off up to 8 s before it reconnects to a controller, whatever max_backoff says), so the
# hold time is 30 s; keepalives every second show soon that the session is healthy again.
HOLD, KEEPALIVE = 30, 1
NET = "10.30.0.0/24"
PEER = birdlab.bgp_peer(port=3, asn=65003, routes=[NET], hold=HOLD, keepalive=KEEPALIVE,
                        lo_addresses=["10.30.0.1/24"])


@pytest.fixture
def lab(request, tmp_path, ovs):
    yield from birdlab.bird_lab(request, tmp_path, peers=[PEER],
                                router_extra=birdlab.router_bgp(peer_port=3, peer_as=65003, hold=HOLD,
                                                                keepalive=KEEPALIVE))


def established(lab) -> dict:
    session = lab.wait_protocol("peer3", "Established", timeout=30)
    lab.wait_fib_group_flow(NET)
    return session


def peer_since(lab) -> str:
    """When the peer's side of the session came up, in the peer's own `show protocols`."""
    line = next(line for line in lab.peer(3).birdc("show protocols taprouter").stdout.splitlines()
                if line.startswith("taprouter"))
    fields = line.split()
    assert fields[3] == "up" and fields[5] == "Established", line
    return fields[4]


def test_bird_killed_is_restarted_and_session_returns(lab):
    established(lab)
    old_pid = lab.bird()["pid"]
    log_mark = lab.log_path.stat().st_size
    os.kill(old_pid, signal.SIGKILL)
    watch = birdlab.Stopwatch()

    new_pid = lab.wait_until(lambda: (pid := lab.bird()["pid"]) and pid != old_pid and pid, timeout=15,
                             interval=0.3, message=lab.bird_report)
    assert not lab.pid_alive(old_pid)
    assert lab.pid_alive(new_pid)
    lab.wait_log(r"BIRD killed by SIGKILL; restarting", since=log_mark, timeout=5)
    lab.wait_log(rf"started BIRD \(pid {new_pid}\)", since=log_mark, timeout=5)
    print(f"BIRD restarted after {watch():.1f} s (pid {old_pid} -> {new_pid})")

    established(lab)
    print(f"BGP Established again after {watch():.1f} s")
    lab.assert_switched(lab.host(1), "10.30.0.1", NET)


def test_daemon_restarts_keep_bird_and_session(lab):
    session = established(lab)
    pid = lab.bird()["pid"]
    since, since_at_peer = session["since"], peer_since(lab)

    for sig in (signal.SIGTERM, signal.SIGKILL):
        name = signal.Signals(sig).name
        lab.stop(sig, timeout=10)
        watch = birdlab.Stopwatch()
        # No daemon: BIRD runs on, and its session is still up.
        assert lab.pid_alive(pid), f"BIRD died with the daemon ({name})"
        assert lab.protocol("peer3")["info"] == "Established"
        lab.start()
        back = time.monotonic()
        print(f"{name}: daemon back after {watch():.1f} s")
        log = lab.log_since_start()
        assert f"adopted BIRD (pid {pid})" in log, log
        assert "started BIRD" not in log, log

        # Both sides have heard from each other since the daemon came back, and the session
        # never went down: the same `since` on both. A hold timer restarts on every message, but
        # BIRD starts it up to 25 % short (RFC 4271's jitter), so "less than the time since the
        # restart has run off it" proves a message after the restart only a few seconds later.
        def heard_since_restart():
            for show in (lambda: lab.router_birdc("show protocols all peer3"),
                         lambda: lab.peer(3).birdc("show protocols all taprouter").stdout):
                asked = time.monotonic()
                left, hold = birdlab.hold_timer(show())
                if hold - left >= asked - back:
                    return False
            return True

        lab.wait_until(heard_since_restart, timeout=20, interval=0.3, message=lab.bird_report)
        p = lab.protocol("peer3")
        assert p["info"] == "Established" and birdlab.same_instant(p["since"], since), \
            (name, p, since, lab.bird_report())
        assert birdlab.same_instant(peer_since(lab), since_at_peer), \
            f"the peer saw the session flap ({name}): {since_at_peer} -> {peer_since(lab)}"
        assert lab.bird()["pid"] == pid
        lab.assert_switched(lab.host(1), "10.30.0.1", NET)
        print(f"{name}: session up since {since} throughout; keepalives both ways {watch():.1f} s "
              "after the stop")

    # A BIRD the daemon adopted (it is not the daemon's child) is watched too: killed, restarted.
    log_mark = lab.log_path.stat().st_size
    os.kill(pid, signal.SIGKILL)
    new_pid = lab.wait_until(lambda: (p := lab.bird()["pid"]) and p != pid and p, timeout=15, interval=0.3,
                             message=lab.bird_report)
    lab.wait_log(r"BIRD is no longer running", since=log_mark, timeout=5)
    lab.wait_log(rf"started BIRD \(pid {new_pid}\)", since=log_mark, timeout=5)
    established(lab)
