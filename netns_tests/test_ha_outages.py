"""The HA pair when things around it fail: the PostgreSQL server stopped and started under a running
pair (the master fences itself but keeps forwarding and relaying; it takes its lease back with a new
generation, and nothing on the switch changes), and the master's host stopping (SIGSTOP: its lease
expires, the standby ends its session and takes over; resumed, the old master joins as standby)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import birdlab
import halab

sys.path.append(str(Path(__file__).resolve().parent.parent / "tests"))
from pgcluster import Cluster  # noqa: E402

TARGET = "10.50.0.1"
LEARNT = "10.50.0.0/24"
HOLD = 6


@pytest.fixture
def own_cluster():
    cluster = Cluster().start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pair(request, tmp_path, ovs, own_cluster):
    peer = birdlab.bgp_peer(port=3, asn=65003, routes=[LEARNT], hold=HOLD, lo_addresses=[f"{TARGET}/24"])
    extra = birdlab.router_bgp(peer_port=3, peer_as=65003, hold=HOLD)
    yield from halab.ha_pair(request, tmp_path, own_cluster, peers=[peer], router_extra=extra)


def pinger(host, count: int) -> subprocess.Popen:
    return subprocess.Popen(["ip", "netns", "exec", host.name, "ping", "-n", "-q", "-c", str(count), "-i", "0.001",
                             "-W", "1", TARGET], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def lost(ping: subprocess.Popen) -> tuple[int, int]:
    out, err = ping.communicate(timeout=120)
    match = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    assert match, out + err
    return int(match.group(1)), int(match.group(1)) - int(match.group(2))


def ready(pair) -> tuple[halab.HaRouter, halab.HaRouter]:
    master = pair.master()
    master.wait_protocol("peer3", "Established", timeout=60)
    master.wait_fib_group_flow(LEARNT, timeout=60)
    master.assert_ping(master.host(1), TARGET)
    master.assert_ping(master.host(2), "10.0.2.1")
    return master, pair.other(master)


def flows(daemon) -> dict:
    return {(f.table, f.priority, f.cookie, tuple(sorted(f.match.items())), f.actions): f.duration
            for f in daemon.flows()}


def test_postgresql_stopped_and_started(pair, own_cluster):
    master, standby = ready(pair)
    generation = master.ha_status()["generation"]
    before = flows(master)
    ping = pinger(master.host(1), 12000)
    try:
        time.sleep(1)
        down = time.monotonic()
        own_cluster.pause()
        master.wait_role("fenced", timeout=10)
        fenced = time.monotonic() - down
        # Fenced: the switch still forwards, and the master still relays PacketIns to its kernel.
        master.assert_ping(master.host(2), "10.0.2.1", count=2)
        assert standby.role() == "standby"
        time.sleep(3)
        own_cluster.resume()
        up = time.monotonic()
        master.wait_role("master", timeout=15)
        back = time.monotonic() - up
        sent, missing = lost(ping)
    finally:
        if ping.poll() is None:
            ping.kill()
            ping.wait()
    ha = master.ha_status()
    print(f"PostgreSQL stopped: the master fenced itself within {fenced:.1f} s, kept forwarding; the server back, "
          f"master again within {back:.1f} s with generation {generation} -> {ha['generation']}; transit pings "
          f"{sent} sent, {missing} lost")
    assert missing == 0
    assert ha["generation"] > generation and standby.role() == "standby"
    time.sleep(2)
    after = flows(master)
    assert after.keys() == before.keys(), before.keys() ^ after.keys()
    assert all(after[k] >= before[k] for k in before), "a flow was re-added after the outage"


def test_master_stops_answering(pair):
    master, standby = ready(pair)
    generation = master.ha_status()["generation"]
    ping = pinger(master.host(1), 8000)
    try:
        time.sleep(1)
        os.kill(master.proc.pid, signal.SIGSTOP)
        stopped = time.monotonic()
        relayed = None
        while time.monotonic() - stopped < 15:
            if subprocess.run(["ip", "netns", "exec", master.host(2).name, "ping", "-n", "-c", "1", "-W", "0.1",
                               "10.0.2.1"], capture_output=True).returncode == 0:
                relayed = time.monotonic() - stopped
                break
        standby.wait_role("master", timeout=10)
        os.kill(master.proc.pid, signal.SIGCONT)
        master.wait_role("standby", timeout=15)
        sent, missing = lost(ping)
    finally:
        if master.proc.poll() is None:
            os.kill(master.proc.pid, signal.SIGCONT)
        if ping.poll() is None:
            ping.kill()
            ping.wait()
    ha = standby.ha_status()
    print(f"master SIGSTOPped: the standby relays PacketIns {relayed if relayed is None else round(relayed, 2)} s "
          f"later (lease {master.ha['lease_seconds']} s), generation {generation} -> {ha['generation']}; the old "
          f"master resumed joins as standby; transit pings {sent} sent, {missing} lost")
    assert relayed is not None and relayed < 3.0
    assert ha["generation"] > generation and ha["holder"] == standby.node
    assert missing == 0
    # The resumed master wrote nothing: no switch error and no pass in its log after the resume.
    log = master.log_since_start()
    assert "fenced" in log
