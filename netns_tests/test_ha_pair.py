"""The HA pair: two daemons on one switch, a lease in PostgreSQL, OpenFlow roles.

Both started at once: exactly one master. kill -9 of the master under 1000 pps of transit pings to a
BGP-learnt prefix: nothing lost, the standby is master and relays PacketIns within 2 s, holds the
flows its kernel lacks until its BIRD has converged, then sweeps; the old master, restarted, joins as
standby and changes nothing on the switch."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import urllib.request

import pytest

import birdlab
import halab
from routerlab import wait_until

TARGET = "10.50.0.1"  # on h3's lo, announced by h3's BIRD over BGP
LEARNT = "10.50.0.0/24"
GONE = "10.51.0.0/24"  # announced before the failover only: swept after the new master converged
HOLD = 6
PING_COUNT, PING_INTERVAL = 10000, 0.001  # 1000 pps for 10 s


@pytest.fixture
def pair(request, tmp_path, ovs, pg_cluster):
    peer = birdlab.bgp_peer(port=3, asn=65003, routes=[LEARNT, GONE], hold=HOLD, lo_addresses=[f"{TARGET}/24"])
    extra = birdlab.router_bgp(peer_port=3, peer_as=65003, hold=HOLD)
    yield from halab.ha_pair(request, tmp_path, pg_cluster, peers=[peer], router_extra=extra)


def test_kill_the_master(pair):
    master = pair.master()
    standby = pair.other(master)
    assert standby.role() == "standby"
    first = master.ha_status()
    assert first["holder"] == master.node and first["generation"] >= 1
    # The switch agrees: one master, one slave (Open vSwitch's own Controller records).
    wait_until(lambda: halab.switch_roles(pair) == {master.node: "master", standby.node: "slave"}, timeout=10,
               message=lambda: f"switch roles {halab.switch_roles(pair)}")
    # status (the control socket's answer) and /metrics say the same.
    for daemon, role in ((master, "master"), (standby, "standby")):
        (entry,) = halab.status_json(daemon)
        assert entry["ha"]["role"] == role and entry["ha"]["holder"] == master.node, entry["ha"]
        text = daemon.taprouter("status", "-c", str(daemon.config_path)).stdout
        assert f"HA: {role} (node {daemon.node}; lease holder {master.node}" in text, text
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{daemon.metrics_port}/metrics", timeout=5).read().decode()
        assert f'taprouter_ha_role{{role="{role}",router="{daemon.router}"}} 1.0' in metrics
        shown = re.search(rf'^taprouter_ha_generation{{router="{daemon.router}"}} (\S+)$', metrics, re.M)
        assert shown and float(shown.group(1)) == float(first["generation"]), metrics[-2000:]
    master.wait_protocol("peer3", "Established", timeout=60)
    master.wait_fib_group_flow(LEARNT, timeout=60)
    master.wait_fib_group_flow(GONE, timeout=30)
    master.assert_ping(master.host(1), TARGET)
    # h2 knows the router's MAC before the kill: the time below is the relay's, not h2's ARP retry.
    master.assert_ping(master.host(2), "10.0.2.1")
    # The standby's BIRD has no session: its TAPs see nothing.
    assert standby.protocol("peer3")["info"] != "Established"

    ping = subprocess.Popen(["ip", "netns", "exec", master.host(1).name, "ping", "-n", "-q", "-c", str(PING_COUNT),
                             "-i", str(PING_INTERVAL), "-W", "1", TARGET],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2)
        mark = standby.log_path.stat().st_size
        os.kill(master.proc.pid, signal.SIGKILL)
        killed = time.monotonic()
        print(f"kill -9 of {master.node} at {time.strftime('%H:%M:%S')}.{int(time.time() * 1000) % 1000:03d}")
        # The peer stops announcing GONE now: the new master's BIRD never learns it, so its flow is
        # held stale, then swept once that BIRD has converged.
        pair.a.peer(3).reconfigure(pair.a.peer(3).config.read_text().replace(f"  route {GONE} unreachable;\n", ""))
        # Relaying PacketIns: a ping to the router's own address is answered by the new master's kernel.
        relayed = None
        host2 = standby.host(2)
        attempts = []
        while time.monotonic() - killed < 10:
            rc = subprocess.run(["ip", "netns", "exec", host2.name, "ping", "-n", "-c", "1", "-W", "0.1", "10.0.2.1"],
                                capture_output=True).returncode
            attempts.append((round(time.monotonic() - killed, 3), rc))
            if rc == 0:
                relayed = time.monotonic() - killed
                break
        print("attempts", attempts)
        master.proc.wait(timeout=10)
        standby.wait_role("master", timeout=10)
        became = time.monotonic() - killed  # an upper bound: the status file is written once a second
        held = standby.wait_log(r"holding (\d+) stale route flows", since=mark, timeout=5)
        assert standby.fib_flow(GONE) is not None, "GONE's flow went before the new master's BIRD converged"
        ha = standby.ha_status()
        # (Open vSwitch writes a controller's role to its database every few seconds.)
        wait_until(lambda: halab.switch_roles(pair)[standby.node] == "master", timeout=15,
                   message=lambda: f"switch roles {halab.switch_roles(pair)}")
        assert ha["generation"] > first["generation"] and ha["holder"] == standby.node
        stale_seen = int(held.group(1))
        standby.wait_protocol("peer3", "Established", timeout=60)
        swept = standby.wait_log(r"converged \((\w[\w ]*)\); sweeping (\d+) stale route flows", timeout=90)
        out, err = ping.communicate(timeout=PING_COUNT * PING_INTERVAL * 4 + 30)
    finally:
        if ping.poll() is None:
            ping.kill()
            ping.wait()
    match = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    assert match, out + err
    sent, received = int(match.group(1)), int(match.group(2))
    print(f"failover: PacketIns relayed (a ping to the router answered) {relayed if relayed is None else round(relayed, 2)} s "
          f"after kill -9 (status file says master by {became:.2f} s); {stale_seen} stale flows held; sweep by "
          f"{swept.group(1)} ({swept.group(2)} route flows); transit pings {sent} sent, {received} received, "
          f"{sent - received} lost")
    assert became < 3.0
    assert relayed is not None and relayed < 2.0, f"PacketIns not relayed within 2 s ({relayed})"
    assert stale_seen > 0, "the new master held no stale flow: its kernel had the BGP routes already?"
    assert sent - received == 0, f"{sent - received} of {sent} transit pings lost across the failover"
    assert int(swept.group(2)) >= 1, "nothing swept: GONE was not held?"
    wait_until(lambda: standby.fib_flow(GONE) is None, timeout=10, message=lambda: standby.dump_flows(birdlab.FIB4))
    assert standby.fib_flow(LEARNT) is not None and standby.fib_flow(LEARNT).group is not None

    # The old master comes back: standby, and nothing on the switch changes (no flow re-added: each
    # one's duration only grew).
    def snapshot():
        return {(f.table, f.priority, f.cookie, tuple(sorted(f.match.items())), f.actions): f.duration
                for f in standby.flows()}
    before, groups_before = snapshot(), standby.groups()
    master.start(wait=False)
    master.wait_role("standby", timeout=20)
    master.wait_router_bird()
    time.sleep(3)
    after, groups_after = snapshot(), standby.groups()
    assert after.keys() == before.keys(), (before.keys() ^ after.keys())
    assert all(after[k] >= before[k] for k in before), "a flow was re-added while the old master rejoined"
    assert groups_after == groups_before
    assert standby.role() == "master" and master.ha_status()["generation"] == ha["generation"]
    wait_until(lambda: halab.switch_roles(pair) == {standby.node: "master", master.node: "slave"}, timeout=15,
               message=lambda: f"switch roles {halab.switch_roles(pair)}")
    assert "reconciled" not in master.log_since_start()
