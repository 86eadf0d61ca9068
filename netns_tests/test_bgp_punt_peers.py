"""BGP is admitted unmetered only from BIRD's configured neighbours: the punt flows for TCP port 179
name the peer's address (learnt from `birdc show protocols all`), and a flood of TCP segments to
port 179 from a host that is not a peer is policed on its port, so that little of it reaches the
router's kernel and the daemon, while the real session stays up."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

import birdlab
from routerlab import PYTHON, REPO
from taprouter.controller.openflow.pipeline import PORT_LOCAL_RATE, Table

HOLD = 6
NET = "10.30.0.0/24"
PEER = birdlab.bgp_peer(port=3, asn=65003, routes=[NET], hold=HOLD, lo_addresses=["10.30.0.1/24"])
FLOOD_SECONDS, FLOOD_RATE = 6, 150_000  # asked of the sender; it reaches what a Python loop can


@pytest.fixture
def lab(request, tmp_path, ovs):
    yield from birdlab.bird_lab(request, tmp_path, peers=[PEER],
                                router_extra=birdlab.router_bgp(peer_port=3, peer_as=65003, hold=HOLD))


def bgp_flows(lab) -> list:
    return [f for f in lab.flows(int(Table.PUNT)) if "179" in (f.match.get("tp_dst"), f.match.get("tp_src"))]


def tcp_in_segments(lab) -> int:
    lines = [line.split() for line in lab.in_router("cat", "/proc/net/snmp").stdout.splitlines()
             if line.startswith("Tcp:")]
    return int(lines[1][lines[0].index("InSegs")])


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_bgp_is_admitted_from_the_peer_only_and_a_non_peer_flood_is_policed(lab):
    session = lab.wait_protocol("peer3", "Established", timeout=30)
    lab.wait_fib_group_flow(NET)
    flows = lab.wait_until(lambda: (found := bgp_flows(lab)) and all(f.match.get("nw_src") for f in found) and found,
                           timeout=15, message=lambda: lab.dump_flows(int(Table.PUNT)))
    assert {f.match.get("nw_src") for f in flows} == {"10.0.3.2"}, [f.line for f in flows]

    h1 = lab.host(1)
    before_segs, before_cpu, started = tcp_in_segments(lab), cpu_seconds(lab.proc.pid), time.monotonic()
    sender = REPO / "benchmarks" / "flood_sender.py"
    out = subprocess.run(["ip", "netns", "exec", h1.name, PYTHON, str(sender), "10.0.1.1", "179",
                          str(FLOOD_RATE * FLOOD_SECONDS), str(FLOOD_RATE), str(FLOOD_SECONDS), "10.0.1.2"], capture_output=True, text=True, timeout=FLOOD_SECONDS + 30,
                         check=True).stdout
    sent = json.loads(out)["sent"]
    elapsed = time.monotonic() - started
    reached = tcp_in_segments(lab) - before_segs
    cpu = cpu_seconds(lab.proc.pid) - before_cpu
    print(f"TCP to port 179 from non-peer h1: {sent / FLOOD_SECONDS:.0f} segments/s for {FLOOD_SECONDS} s; "
          f"{reached} reached the router's kernel ({reached / elapsed:.0f}/s); daemon CPU {100 * cpu / elapsed:.0f}% "
          f"of a core")
    assert sent > 3 * PORT_LOCAL_RATE * FLOOD_SECONDS, f"the flood was too slow to test the meter: {sent}"
    # Port 1's local meter, plus the session's own segments and a burst.
    assert reached < 1.5 * PORT_LOCAL_RATE * elapsed + 500, f"{reached} of {sent} reached the kernel"
    p = lab.protocol("peer3")
    assert p["info"] == "Established" and birdlab.same_instant(p["since"], session["since"]), (p, session)
    lab.assert_switched(lab.host(1), "10.30.0.1", NET)
