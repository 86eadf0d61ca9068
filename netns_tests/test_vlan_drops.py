"""Tagged frames the router has no VLAN for are dropped by the switch and counted in /metrics
(taprouter_ingress_dropped_packets_total{router,port,reason}): a VLAN the trunk's port does not
carry, a tag on a port with no VLANs at all, and a double-tagged (QinQ) frame. None reaches the
relay or the kernel.

The frames are written straight onto the trunk (the access switch's end of the veth into router
port 1) or from h3's namespace onto port 3, by scapy: no namespace here can tag a frame itself."""

from __future__ import annotations

import pytest

import vlanlab
from routerlab import PYTHON, run
from vlanlab import VLANS

DROPPED = "taprouter_ingress_dropped_packets"
N = 7
SRC_MAC = "02:7a:7f:00:00:09"

SEND = """
from scapy.all import ARP, ICMP, IP, Dot1Q, Ether, sendp
frame = {frame}
sendp(frame, iface={iface!r}, count={count}, verbose=False)
"""


@pytest.fixture
def lab(request, tmp_path, ovs):
    yield from vlanlab.vlan_lab(request, tmp_path)


def send(lab, frame: str, iface: str, netns: str | None = None) -> None:
    run(PYTHON, "-c", SEND.format(frame=frame, iface=iface, count=N), netns=netns, timeout=60)


def dropped(lab, port: int, reason: str) -> float:
    return lab.counter(DROPPED, router=lab.router, port=str(port), reason=reason)


def relay_errors(lab) -> float:
    """Frames the relay itself refused for their tags: the switch should have dropped them first."""
    return sum(lab.counter("taprouter_relay_errors", router=lab.router, kind=kind)
               for kind in ("unknown_vlan", "unknown_port", "double_tagged"))


def assert_never_reached_the_kernel(lab) -> None:
    # An ARP request or an echo request for the router's address would have left the kernel a
    # neighbour entry for the sender (learnt, or being resolved for the reply).
    neighbours = [n for n in lab.router_neighbours() if n["dst"] == "10.100.0.9"]
    assert not neighbours, f"the kernel saw a frame that should have been dropped: {neighbours}"


def assert_counted(lab, port: int, reason: str, before: float) -> None:
    # The daemon reads the drop flows' counters from the switch every few seconds: poll.
    lab.wait_until(lambda: dropped(lab, port, reason) >= before + N, timeout=15, interval=0.5,
                   message=lambda: f"{DROPPED}{{port={port},reason={reason}}} at {dropped(lab, port, reason)}, "
                                   f"expected {before + N}; flows:\n{lab.dump_flows(0)}")
    assert dropped(lab, port, reason) == before + N, "more drops counted than frames sent"
    # `taprouter status --json` shows the same count.
    shown = [d["packets"] for d in lab.status()["ingress_drops"] if d["port"] == port and d["reason"] == reason]
    assert shown == [before + N], lab.status()["ingress_drops"]


def test_unknown_vlans_are_dropped_and_counted(lab):
    lab.assert_ping(lab.vhost(100), VLANS[100].router(4), count=2)  # the daemon is up and counting
    before = {p: dropped(lab, p, "unknown_vlan") for p in (1, 3)}
    refused = relay_errors(lab)
    # VLAN 999 on the trunk of port 1 (which carries 100 and 200), for the router's own address.
    send(lab, f"Ether(src={SRC_MAC!r}, dst='ff:ff:ff:ff:ff:ff')/Dot1Q(vlan=999)/"
              f"ARP(psrc='10.100.0.9', hwsrc={SRC_MAC!r}, pdst='10.100.0.1')", lab.trunk_veth(1))
    assert_counted(lab, 1, "unknown_vlan", before[1])
    # VLAN 100 is the router's on port 1 only: on port 3, which has no VLANs, it is unknown.
    send(lab, f"Ether(src={SRC_MAC!r}, dst='ff:ff:ff:ff:ff:ff')/Dot1Q(vlan=100)/"
              f"ARP(psrc='10.100.0.9', hwsrc={SRC_MAC!r}, pdst='10.100.0.1')", "eth0", lab.host(3).name)
    assert_counted(lab, 3, "unknown_vlan", before[3])
    assert relay_errors(lab) == refused, "the switch passed frames with unknown tags to the relay"
    assert_never_reached_the_kernel(lab)


def test_double_tagged_frames_are_dropped_and_counted(lab):
    lab.assert_ping(lab.vhost(100), VLANS[100].router(4), count=2)
    router_mac = lab.vlan_tap_link(100)["address"]
    before = dropped(lab, 1, "double_tagged")
    unknown = dropped(lab, 1, "unknown_vlan")
    refused = relay_errors(lab)
    # Outer tag 100 is configured on port 1; a second tag inside it is never the router's.
    send(lab, f"Ether(src={SRC_MAC!r}, dst={router_mac!r})/Dot1Q(vlan=100)/Dot1Q(vlan=200)/"
              f"IP(src='10.100.0.9', dst='10.100.0.1')/ICMP()", lab.trunk_veth(1))
    assert_counted(lab, 1, "double_tagged", before)
    assert dropped(lab, 1, "unknown_vlan") == unknown, "a double-tagged frame counted as unknown VLAN too"
    assert relay_errors(lab) == refused, "the switch passed double-tagged frames to the relay"
    assert_never_reached_the_kernel(lab)
    # The router still answers on the VLAN.
    lab.assert_ping(lab.vhost(100), VLANS[100].router(4), count=2)
