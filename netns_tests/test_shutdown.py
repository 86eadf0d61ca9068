"""Shutdown and restart: the TAPs, their carrier and the kernel's neighbours outlive the daemon;
`taprouter down` removes everything."""

from __future__ import annotations

import signal
import time

import pytest

# Neighbour states that mean "the router knows this host's MAC".
KNOWN_STATES = {"REACHABLE", "STALE", "DELAY", "PROBE", "PERMANENT"}


def known_neighbours(router_lab) -> dict[str, tuple[str, str]]:
    """dst -> (lladdr, TAP) of every neighbour the router netns knows a MAC for."""
    return {n["dst"]: (n.get("lladdr", "").lower(), n["dev"]) for n in router_lab.router_neighbours()
            if KNOWN_STATES & set(n.get("state", []))}


def learn_neighbours(router_lab) -> dict[str, tuple[str, str]]:
    """Make the router resolve every host (IPv4 and IPv6) and wait until each entry is REACHABLE.

    The router pings the hosts rather than the other way round: a host's request leaves a
    STALE entry that the router's reply turns into DELAY and, 5 s later, PROBE, and probes
    sent while no daemon relays them fail (see the report). A REACHABLE entry sends nothing
    for its reachable time, so what the restart test sees is the holder's doing alone.
    """
    expected = {}
    for host in router_lab.hosts:
        n = host.port
        mac = router_lab.host_mac(host)
        for address in (f"10.0.{n}.2", f"2001:db8:{n}::2"):
            # Retried: the router's IPv6 address may still be tentative (DAD; see the report).
            router_lab.wait_until(lambda: router_lab.in_router("ping", "-n", "-c", "1", "-W", "1", address,
                                                               check=False).returncode == 0,
                                  timeout=10, message=f"router pings {address}")
            expected[address] = (mac, router_lab.taps[n])

    def all_reachable():
        entries = {n["dst"]: n for n in router_lab.router_neighbours()}
        return all(dst in entries and "REACHABLE" in entries[dst].get("state", [])
                   and (entries[dst].get("lladdr", "").lower(), entries[dst]["dev"]) == want
                   for dst, want in expected.items())

    router_lab.wait_until(all_reachable, timeout=15, interval=0.2,
                          message=lambda: f"REACHABLE neighbours {expected} in {router_lab.router_neighbours()}")
    return expected


def assert_taps_have_carrier(router_lab) -> None:
    for n, tap in router_lab.taps.items():
        link = router_lab.tap_link(n)
        assert "NO-CARRIER" not in link["flags"], f"{tap} lost its carrier: {link}"
        assert "LOWER_UP" in link["flags"] and "UP" in link["flags"], f"{tap}: {link}"


def test_sigterm_exits_cleanly_and_down_removes_everything(router_lab):
    lab = router_lab
    holder_pid = lab.status()["holder_pid"]
    assert holder_pid and lab.pid_alive(holder_pid)
    daemon_pid = lab.proc.pid

    started = time.monotonic()
    assert lab.stop(signal.SIGTERM, timeout=5) == 0
    assert time.monotonic() - started < 5
    assert not lab.pid_alive(daemon_pid)
    log = lab.log_since_start()
    assert "taprouter: stopping" in log and "taprouter.core: stopped; relay counters" in log, log

    # What must outlive the daemon does: the TAPs in the router netns, with carrier, and the holder.
    assert_taps_have_carrier(lab)
    status = lab.status()
    assert status["netns_present"]
    assert status["holder_pid"] == holder_pid and lab.pid_alive(holder_pid)
    assert status["daemon"] is None, "status still reports a daemon that has exited"
    assert all(p["present"] and p["carrier"] for p in status["ports"]), status

    # `down` removes all of it.
    out = lab.down().stdout
    assert f"TAP holder of {lab.router}" in out and f"netns {lab.netns}" in out, out
    lab.wait_until(lambda: not lab.pid_alive(holder_pid), timeout=5,
                   message=f"holder pid {holder_pid} still alive after down")
    assert lab.netns not in lab.netns_list(), f"router netns {lab.netns} still exists"
    assert not set(lab.taps.values()) & set(lab.root_links()), "a TAP moved to the root netns"
    assert not lab.router_dir.exists(), sorted(p.name for p in lab.router_dir.iterdir())
    status = lab.status()
    assert not status["netns_present"] and status["holder_pid"] is None, status
    assert not any(p["present"] for p in status["ports"]), status

    # And a second `down` finds nothing to do.
    assert "nothing (already down)" in lab.down().stdout


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_restart_readopts_taps_and_keeps_neighbours(router_lab, sig):
    lab = router_lab
    expected = learn_neighbours(lab)
    holder_pid = lab.status()["holder_pid"]
    tap_index = {n: lab.tap_link(n)["ifindex"] for n in lab.taps}

    code = lab.stop(sig, timeout=5)
    assert code == (0 if sig == signal.SIGTERM else -signal.SIGKILL)

    # While no daemon runs: the holder keeps the TAPs open, so they keep their carrier,
    # and the kernel keeps its neighbours (it flushes them when the last fd closes).
    assert lab.pid_alive(holder_pid)
    assert_taps_have_carrier(lab)
    assert expected.items() <= known_neighbours(lab).items(), lab.router_neighbours()

    lab.start()
    log = lab.log_since_start()
    assert "re-adopted 3 TAP(s) from the holder" in log, log
    assert " opened for port " not in log, "a TAP was opened afresh instead of re-adopted"
    assert lab.status()["holder_pid"] == holder_pid
    assert {n: lab.tap_link(n)["ifindex"] for n in lab.taps} == tap_index, "TAPs were recreated"
    assert_taps_have_carrier(lab)
    # The neighbours learned before the restart are still there, with the same MACs.
    assert expected.items() <= known_neighbours(lab).items(), lab.router_neighbours()

    for host in lab.hosts:
        lab.assert_ping(host, f"10.0.{host.port}.1")
        lab.assert_ping(host, f"2001:db8:{host.port}::1")
