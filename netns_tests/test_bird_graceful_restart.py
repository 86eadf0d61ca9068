"""BIRD killed with -9 under transit traffic: the supervisor restarts it in graceful restart
recovery (-R), its kernel protocol (`graceful restart on`) keeps the routes the dead BIRD put in the
kernel until BGP has converged (End-of-RIB), so routes that come back the same never leave the kernel
nor the switch, and h1's pings at 1000 pps through them lose nothing. Routes that did not come back
are removed after convergence."""

from __future__ import annotations

import ipaddress
import os
import re
import signal
import subprocess
import time

import pytest

import birdlab
from routerlab import wait_until

HOLD = 30
TARGET = "10.30.0.1"  # on h3's lo, inside the first announced prefix
GONE = "10.29.0.0/24"  # announced before the kill, not after: swept once BIRD converged
OPERATOR = "172.16.50.0/24"  # an operator's own static route: its deletion is never deferred
PING_COUNT, PING_INTERVAL = 8000, 0.001  # 1000 pps for 8 s


def announced(count: int) -> list[str]:
    base = int(ipaddress.IPv4Address("10.30.0.0"))
    return [f"{ipaddress.IPv4Address(base + (i << 8))}/24" for i in range(count)]


def peer(count: int) -> birdlab.PeerSpec:
    return birdlab.bgp_peer(port=3, asn=65003, routes=announced(count) + [GONE], hold=HOLD,
                            lo_addresses=["10.30.0.1/24"],
                            extra="")


@pytest.fixture(params=[100, 10_000], ids=["100-routes", "10k-routes"])
def lab(request, tmp_path, ovs):
    count = request.param
    extra = birdlab.router_bgp(peer_port=3, peer_as=65003, hold=HOLD)
    yield from birdlab.bird_lab(request, tmp_path, peers=[peer(count)], router_extra=extra)


def kernel_bird_routes(lab) -> int:
    return len(lab.in_router("ip", "route", "show", "proto", "bird").stdout.splitlines())


def test_bird_kill_loses_no_transit_packet(lab, request):
    count = int(request.node.callspec.id.split("-")[0].replace("k", "000"))
    lab.wait_protocol("peer3", "Established", timeout=60)
    wait_until(lambda: kernel_bird_routes(lab) >= count + 1, timeout=120, interval=0.5,
               message=lambda: f"{count + 1} BIRD routes in the kernel, have {kernel_bird_routes(lab)}")
    lab.wait_fib_group_flow("10.30.0.0/24", timeout=120)
    lab.wait_fib_group_flow(GONE, timeout=60)
    lab.assert_ping(lab.host(1), TARGET)
    lab.in_router("ip", "route", "add", OPERATOR, "via", "10.0.2.2")
    lab.wait_fib_group_flow(OPERATOR)
    # The peer stops announcing GONE while the router's BIRD is dead (its session is down).
    old_pid = lab.bird()["pid"]
    flows_before = lab.flow_count()
    kept, kept_at = lab.fib_flow("10.30.0.0/24"), time.monotonic()

    ping = subprocess.Popen(["ip", "netns", "exec", lab.host(1).name, "ping", "-n", "-q", "-c", str(PING_COUNT),
                             "-i", str(PING_INTERVAL), "-W", "1", TARGET],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1)
        mark = lab.log_path.stat().st_size
        os.kill(old_pid, signal.SIGKILL)
        watch = birdlab.Stopwatch()
        lab.peer(3).reconfigure(lab.peer(3).config.read_text().replace(f"  route {GONE} unreachable;\n", ""))
        new_pid = wait_until(lambda: (pid := lab.bird()["pid"]) and pid != old_pid and pid, timeout=15,
                             interval=0.1, message=lab.bird_report)
        restarted = watch()
        lab.wait_log(r"in graceful restart recovery", since=mark, timeout=5)
        # While BIRD recovers, the operator deletes their route: it leaves the switch at once.
        assert lab.kernel_route(GONE) is not None, "the dead BIRD's routes are kept while BIRD recovers"
        lab.in_router("ip", "route", "del", OPERATOR)
        deleted = time.monotonic()
        wait_until(lambda: lab.fib_flow(OPERATOR) is None, timeout=5, interval=0.05,
                   message=lambda: lab.dump_flows(birdlab.FIB4)[-2000:])
        operator_gone = time.monotonic() - deleted
        lab.wait_protocol("peer3", "Established", timeout=60)
        established = watch()
        # The withdrawn route goes once BIRD has converged (End-of-RIB); the others stay.
        wait_until(lambda: lab.kernel_route(GONE) is None, timeout=120, interval=0.1, message=lab.bird_report)
        swept = watch()
        out, err = ping.communicate(timeout=PING_COUNT * PING_INTERVAL * 4 + 30)
    finally:
        if ping.poll() is None:
            ping.kill()
            ping.wait()
    match = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    assert match, out + err
    sent, received = int(match.group(1)), int(match.group(2))
    print(f"{count} routes: BIRD {old_pid} -> {new_pid} restarted after {restarted:.1f} s, BGP Established "
          f"after {established:.1f} s; pings to {TARGET}: {sent} sent, {received} received, "
          f"{sent - received} lost; the operator's route left the switch {operator_gone * 1000:.0f} ms after "
          "its `ip route del` during the recovery")
    wait_until(lambda: lab.fib_flow(GONE) is None, timeout=30, interval=0.5,
               message=lambda: lab.dump_flows(birdlab.FIB4)[-2000:])
    print(f"{count} routes: {GONE}, withdrawn while BIRD was down, left the kernel {swept:.1f} s after the kill; "
          f"FIB flows {flows_before} -> {lab.flow_count()}")
    assert sent - received == 0, f"{sent - received} of {sent} pings lost across BIRD's kill -9"
    assert lab.kernel_route("10.30.0.0/24") is not None
    # The flow of a route that came back the same is the same flow: never deleted and re-added.
    after = lab.fib_flow("10.30.0.0/24")
    assert after is not None and after.duration >= kept.duration + (time.monotonic() - kept_at) - 1.5, \
        (kept, after)


STUB = "10.20.0.1"  # on the OSPF neighbour's lo (h2)


@pytest.fixture
def ospf_lab(request, tmp_path, ovs):
    extra = birdlab.router_bgp(peer_port=3, peer_as=65003, hold=HOLD)
    yield from birdlab.bird_lab(request, tmp_path, peers=[peer(100), birdlab.ospf_peer(port=2)], router_extra=extra)


def pinger(lab, address: str) -> subprocess.Popen:
    return subprocess.Popen(["ip", "netns", "exec", lab.host(1).name, "ping", "-n", "-q", "-c", str(PING_COUNT),
                             "-i", str(PING_INTERVAL), "-W", "1", address],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_bird_kill_with_ospf_and_bgp_loses_no_transit_packet(ospf_lab):
    lab = ospf_lab
    lab.wait_protocol("peer3", "Established", timeout=60)
    lab.wait_protocol("ospf4", "Running", timeout=30)
    lab.wait_fib_group_flow("10.20.0.0/24", timeout=60)
    lab.wait_fib_group_flow("10.30.0.0/24", timeout=60)
    lab.assert_ping(lab.host(1), STUB)
    old_pid = lab.bird()["pid"]
    pings = {address: pinger(lab, address) for address in (STUB, TARGET)}
    try:
        time.sleep(1)
        os.kill(old_pid, signal.SIGKILL)
        watch = birdlab.Stopwatch()
        wait_until(lambda: (pid := lab.bird()["pid"]) and pid != old_pid and pid, timeout=15, interval=0.1,
                   message=lab.bird_report)
        lab.wait_protocol("peer3", "Established", timeout=60)
        wait_until(lambda: any(n["state"].startswith("Full") for n in lab.bird()["ospf_neighbours"]), timeout=60,
                   interval=0.2, message=lab.bird_report)
        full = watch()
        results = {a: p.communicate(timeout=PING_COUNT * PING_INTERVAL * 4 + 30) for a, p in pings.items()}
    finally:
        for p in pings.values():
            if p.poll() is None:
                p.kill()
                p.wait()
    lost = {}
    for address, (out, err) in results.items():
        match = re.search(r"(\d+) packets transmitted, (\d+) received", out)
        assert match, out + err
        lost[address] = int(match.group(1)) - int(match.group(2))
    print(f"BIRD kill -9 with OSPF and BGP: OSPF Full again after {full:.1f} s; pings lost: "
          f"{lost[STUB]} of {PING_COUNT} to the OSPF stub, {lost[TARGET]} of {PING_COUNT} through BGP")
    assert lost == {STUB: 0, TARGET: 0}, lost
