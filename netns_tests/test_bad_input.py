"""Bad input: ports the config does not know, and malformed frames, must not hurt the router."""

from __future__ import annotations

import json
import subprocess

import ofctl

NOT_IN_CONFIG = "switch port 9 is not in the config"


def port_rx_packets(router_lab, port: int) -> int:
    return ofctl.ports(router_lab.bridge, port)[port].rx_packets


def test_port_not_in_config_is_left_alone(router_lab):
    lab = router_lab
    # A 4th host on switch port 9, in h1's subnet, that the config does not mention.
    h9 = lab.lab.add_host("h9", 9, "10.0.1.9/24", "2001:db8:1::9/64")
    lab.wait_log(NOT_IN_CONFIG)

    # More port-status events for port 9 must not repeat the message.
    veth = lab.lab.switch_veth(9)
    subprocess.run(["ip", "link", "set", veth, "down"], check=True)
    lab.wait_log(r"port 9 down")
    subprocess.run(["ip", "link", "set", veth, "up"], check=True)
    lab.wait_log(r"port 9 up")

    # Its traffic reaches the switch, but none of it is punted: no PacketIn from port 9
    # (the relay would count it as unknown_port), and nothing answers its ARP or ping.
    rx_before = port_rx_packets(lab, 9)
    result = lab.ping(h9, "10.0.1.1", count=2, deadline=2)
    assert result.returncode != 0, f"h9 (not configured) got an answer from the router:\n{result.stdout}"
    result = lab.ping(h9, "2001:db8:1::1", count=2, deadline=2)
    assert result.returncode != 0, f"h9 (not configured) got an answer from the router:\n{result.stdout}"
    assert port_rx_packets(lab, 9) > rx_before, "h9's frames never reached the switch"
    flows = [f.line for f in lab.flows() if f.match.get("in_port") == "9"]
    assert not flows, f"flows for an unconfigured port:\n{flows}"
    status = lab.fresh_daemon_status()  # written after h9's traffic
    assert status["relay"]["unknown_port"] == 0, status
    # Port 9 shows in the switch's ports the daemon knows, but it has no TAP.
    assert "9" in status["switch_ports"], status
    assert all(not name.endswith("p9") for name in lab.in_router("ip", "-o", "link").stdout.split())

    assert lab.log_since_start().count(NOT_IN_CONFIG) == 1, lab.log_since_start()
    assert lab.daemon_alive()
    for host in lab.hosts[:3]:
        lab.assert_ping(host, f"10.0.{host.port}.1")
        lab.assert_ping(host, f"2001:db8:{host.port}::1")


MALFORMED = r"""
import json, random
from scapy.all import (ARP, ICMP, IP, TCP, UDP, IPv6, Ether, ICMPv6ND_NS, ICMPv6EchoRequest, conf,
                       get_if_hwaddr, sendp)
conf.verb = 0
r = "{router_mac}"
me = get_if_hwaddr("eth0")
rnd = random.Random(1)
junk = lambda n: bytes(rnd.getrandbits(8) for _ in range(n))
ip_ok = bytes(IP(src="10.0.1.2", dst="10.0.1.1") / ICMP() / (b"x" * 8))
ip4 = lambda **kw: Ether(dst=r, src=me) / IP(src="10.0.1.2", dst="10.0.1.1", **kw)
ip6 = lambda **kw: Ether(dst=r, src=me) / IPv6(src="2001:db8:1::2", dst="2001:db8:1::1", **kw)
# Malformed at a layer the switch parses: it cannot match them to a punt flow, so it drops them.
dropped = [
    # IPv4, header cut off before the destination address
    Ether(dst=r, src=me, type=0x0800) / ip_ok[:12],
    # IPv4, IHL says 60 bytes of header but only 20 are there
    Ether(dst=r, src=me, type=0x0800) / (bytes([0x4F]) + ip_ok[1:20]),
    # IPv4, IHL below the minimum of 5
    Ether(dst=r, src=me, type=0x0800) / (bytes([0x42]) + ip_ok[1:]),
    # IPv4 to the router, total length far beyond the frame
    ip4(len=1400) / ICMP(),
    # IPv4 to the router, version 6 in the header
    Ether(dst=r, src=me, type=0x0800) / (bytes([0x65]) + ip_ok[1:]),
    # Ethernet header alone, IPv4 and ARP ethertypes, to the router and to broadcast
    Ether(dst=r, src=me, type=0x0800),
    Ether(dst="ff:ff:ff:ff:ff:ff", src=me, type=0x0806),
    # garbage ethertypes and payloads
    Ether(dst=r, src=me, type=0x88B5) / junk(100),
    Ether(dst="ff:ff:ff:ff:ff:ff", src=me, type=0xFFFF) / junk(64),
    Ether(dst=r, src=me, type=0x0000) / junk(46),
    # ARP with a hardware length of 9 (and of 0), asking for the router
    Ether(dst="ff:ff:ff:ff:ff:ff", src=me) / ARP(hwlen=9, hwsrc=me, psrc="10.0.1.2", pdst="10.0.1.1"),
    Ether(dst="ff:ff:ff:ff:ff:ff", src=me) / ARP(hwlen=0, psrc="10.0.1.2", pdst="10.0.1.1"),
    # ARP that stops halfway
    Ether(dst="ff:ff:ff:ff:ff:ff", src=me, type=0x0806) / bytes(ARP(psrc="10.0.1.2", pdst="10.0.1.1"))[:14],
    # ARP with a protocol length of 16
    Ether(dst="ff:ff:ff:ff:ff:ff", src=me) / ARP(plen=16, psrc="10.0.1.2", pdst="10.0.1.1"),
    # IPv6 to the router, payload length beyond the frame
    ip6(plen=4000) / ICMPv6EchoRequest(),
    # ICMPv6 neighbour solicitation cut after the ICMPv6 header, to the solicited-node group
    Ether(dst="33:33:ff:00:00:01", src=me, type=0x86DD) /
        bytes(IPv6(src="2001:db8:1::2", dst="ff02::1:ff00:1") / ICMPv6ND_NS(tgt="2001:db8:1::1"))[:44],
]
# Well-formed up to the fields the punt flows match, broken above: the switch punts them,
# the relay writes them to the TAP, and the kernel drops them.
punted = [
    ip4(chksum=0xDEAD) / ICMP(),                      # bad IPv4 header checksum
    ip4() / ICMP(chksum=0xBEEF),                      # bad ICMP checksum
    ip4(flags="MF", frag=100) / junk(64),             # a lone fragment of nothing
    ip4() / UDP(dport=9, len=5000) / b"x",            # UDP length beyond the datagram
    ip4() / TCP(dport=22, dataofs=15),                # TCP header longer than the segment
    ip4(proto=253) / junk(64),                        # an unknown protocol
    ip6(nh=58) / junk(200),                           # ICMPv6 of random bytes
    ip6() / ICMPv6EchoRequest(cksum=0xBEEF),          # bad ICMPv6 checksum
    ip6(nh=44) / junk(8),                             # an IPv6 fragment header and nothing else
    # an ARP operation 99 and an unsolicited reply, both for the router's address
    Ether(dst="ff:ff:ff:ff:ff:ff", src=me) / ARP(op=99, psrc="10.0.1.2", pdst="10.0.1.1"),
    Ether(dst=r, src=me) / ARP(op=2, hwsrc="02:00:00:00:00:77", psrc="10.0.1.77", pdst="10.0.1.1"),
]
for frame in dropped + punted:
    sendp(frame, iface="eth0", count=3)
print(json.dumps({{"dropped": 3 * len(dropped), "punted": 3 * len(punted)}}))
"""

OVERSIZE = r"""
from scapy.all import ICMP, IP, Ether, conf, get_if_hwaddr, sendp
conf.verb = 0
me = get_if_hwaddr("eth0")
frame = Ether(dst="{router_mac}", src=me) / IP(src="10.0.1.2", dst="10.0.1.1") / ICMP()
frame = frame / (b"x" * ({size} - len(frame)))
assert len(frame) == {size}
sendp(frame, iface="eth0", count=3)
"""


def test_malformed_frames_do_not_hurt_the_router(router_lab):
    lab = router_lab
    h1 = lab.host(1)
    router_mac = lab.switch_mac(1)
    lab.assert_ping(h1, "10.0.1.1")  # the router has a neighbour entry, and the path works

    before = lab.fresh_daemon_status()["relay"]
    sent = json.loads(lab.host_python(h1, MALFORMED.format(router_mac=router_mac)))
    # The frames the switch punts reach the TAP (other traffic only adds to to_tap).
    relay = lab.wait_until(
        lambda: (r := lab.daemon_status()["relay"])["to_tap"] >= before["to_tap"] + sent["punted"] and r,
        message=lambda: f"{sent['punted']} more frames to the TAPs than {before}: {lab.daemon_status()}")
    assert relay["write_errors"] == before["write_errors"], relay
    print(f"relay before {before}, after {relay}, sent {sent}")
    assert lab.daemon_alive(), lab.log_since_start()

    # Oversize: jumbo frames on h1's veth pair; the TAP keeps MTU 1500, so the relay must
    # drop a PacketIn longer than 1514 bytes and count it, rather than write it to the TAP.
    assert lab.tap_link(1)["mtu"] == 1500
    veth = lab.lab.switch_veth(1)
    subprocess.run(["ovs-vsctl", "set", "interface", veth, "mtu_request=9000"], check=True)
    h1.run("ip", "link", "set", "eth0", "mtu", "9000")
    lab.wait_until(lambda: json.loads(subprocess.run(["ip", "-j", "link", "show", veth], capture_output=True,
                                                     text=True).stdout)[0]["mtu"] == 9000)
    oversize = lambda: lab.daemon_status()["relay"]["oversize"]  # noqa: E731
    before = lab.fresh_daemon_status()["relay"]["oversize"]

    # The largest frame the TAP takes (1500 bytes of IPv4) still gets through, both ways.
    lab.assert_ping(h1, "10.0.1.1", count=2, extra=("-s", "1472", "-M", "do"))

    lab.host_python(h1, OVERSIZE.format(router_mac=router_mac, size=9000))
    lab.wait_until(lambda: oversize() == before + 3, timeout=10,
                   message=lambda: f"3 more oversize frames than {before}: {lab.daemon_status()}")
    # One byte more than the TAP takes: no answer, and counted as oversize.
    result = lab.ping(h1, "10.0.1.1", count=2, extra=("-s", "1473", "-M", "do"), deadline=None)
    assert result.returncode != 0, result.stdout
    lab.wait_until(lambda: oversize() == before + 5, timeout=10,
                   message=lambda: f"2 more oversize frames than {before + 3}: {lab.daemon_status()}")
    assert lab.daemon_status()["pid"] == lab.proc.pid

    # The daemon survived all of it, logged no traceback, and the router still answers.
    assert lab.daemon_alive(), lab.log_since_start()
    assert "Traceback" not in lab.log_since_start()
    for host in lab.hosts:
        lab.assert_ping(host, f"10.0.{host.port}.1")
        lab.assert_ping(host, f"2001:db8:{host.port}::1")
