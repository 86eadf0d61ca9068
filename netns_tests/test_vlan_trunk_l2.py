"""The trunk lab's own layer 2, without a daemon: frames from the access hosts reach the router's
bridge tagged with their VLAN (untagged for the native VLAN), and a tagged frame sent to a trunk
reaches only that VLAN's host, untagged. Everything the VLAN tests prove rests on this."""

from __future__ import annotations

import subprocess
import time

import pytest

import ofctl
import vlanlab
from routerlab import PYTHON, run

COOKIE = "0x7a7f00"  # this test's own flows on the router's bridge


@pytest.fixture
def lab(request, tmp_path, ovs):
    yield from vlanlab.vlan_lab(request, tmp_path, start=False)


def add_flow(lab, spec: str) -> None:
    run("ovs-ofctl", "-O", "OpenFlow13", "add-flow", lab.bridge, f"cookie={COOKIE},{spec}")


def counted(lab, match: str) -> int:
    flows = [f for f in lab.flows(0) if f.line.find(match) >= 0]
    assert len(flows) == 1, f"one flow matching {match!r} expected:\n{lab.dump_flows(0)}"
    return flows[0].n_packets


def test_access_hosts_arrive_tagged_on_the_trunks(lab):
    # One counting flow per (port, tag) the trunks should carry, and a catch-all per port.
    add_flow(lab, "table=0,priority=100,in_port=1,dl_vlan=100,actions=drop")
    add_flow(lab, "table=0,priority=100,in_port=1,dl_vlan=200,actions=drop")
    add_flow(lab, "table=0,priority=100,in_port=1,vlan_tci=0x0000/0x1fff,actions=drop")
    add_flow(lab, "table=0,priority=100,in_port=2,dl_vlan=300,actions=drop")
    add_flow(lab, "table=0,priority=1,in_port=1,actions=drop")
    add_flow(lab, "table=0,priority=1,in_port=2,actions=drop")
    sources = {"dl_vlan=100": lab.vhost(100), "dl_vlan=200": lab.vhost(200),
               "vlan_tci=0x0000/0x1fff": lab.host(1), "dl_vlan=300": lab.vhost(300)}
    # No router answers: each ping only sends ARP requests for its gateway, broadcast.
    for host in sources.values():
        lab.ping(host, str(host.gateway4), count=2, deadline=None)

    def all_counted():
        return all(counted(lab, m) >= 1 for m in sources)

    lab.wait_until(all_counted, timeout=10, message=lambda: lab.dump_flows(0))
    catch_all = [f for f in lab.flows(0) if f.priority == 1]
    assert len(catch_all) == 2 and not any(f.n_packets for f in catch_all), \
        f"frames on the trunks with a tag the access switch should not send:\n{lab.dump_flows(0)}"


SNIFF = """
import sys
from scapy.all import AsyncSniffer, Dot1Q, Ether
sniffer = AsyncSniffer(iface="eth0", lfilter=lambda p: p.haslayer(Ether) and p[Ether].src == "02:7a:7f:00:00:01")
sniffer.start()
import time; time.sleep({wait})
for p in sniffer.stop():
    print("TAGGED" if p.haslayer(Dot1Q) else "UNTAGGED", p[Ether].type)
"""


def test_a_tagged_frame_from_the_router_reaches_only_its_vlan_untagged(lab):
    # What the router's switch pushes out of port 1 with VLAN 200 must reach v200 alone.
    add_flow(lab, "table=0,priority=100,in_port=3,dl_src=02:7a:7f:00:00:01,"
                  "actions=push_vlan:0x8100,set_field:4296->vlan_vid,output:1")
    sniffers = {}
    for name, host in (("v100", lab.vhost(100)), ("v200", lab.vhost(200)), ("h1", lab.host(1))):
        sniffers[name] = host.popen(str(PYTHON), "-c", SNIFF.format(wait=4), stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)  # the sniffers start
    lab.host_python(lab.host(3), (
        "from scapy.all import Ether, IP, UDP, sendp\n"
        "sendp(Ether(src='02:7a:7f:00:00:01', dst='ff:ff:ff:ff:ff:ff')/IP(dst='10.200.0.2')/UDP(),"
        " iface='eth0', count=3, verbose=False)\n"))
    seen = {}
    for name, proc in sniffers.items():
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, f"sniffer in {name} failed: {err}"
        seen[name] = out.split("\n")
    seen = {name: [line for line in lines if line] for name, lines in seen.items()}
    assert seen["v200"] and all(line.startswith("UNTAGGED") for line in seen["v200"]), seen
    assert not seen["v100"] and not seen["h1"], f"the frame leaked out of VLAN 200: {seen}"
    flow = [f for f in lab.flows(0) if "push_vlan" in f.actions]
    assert flow and flow[0].n_packets == 3, ofctl.dump_flows(lab.bridge, 0)
