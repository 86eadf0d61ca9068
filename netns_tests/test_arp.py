"""ARP: the router netns's kernel answers for its address with the switch port's MAC."""

from __future__ import annotations

import json

ARP_WHO_HAS = """
import json
from scapy.all import ARP, Ether, conf, get_if_hwaddr, srp
conf.verb = 0
mac = get_if_hwaddr("eth0")
ans, _ = srp(Ether(dst="ff:ff:ff:ff:ff:ff", src=mac) /
             ARP(op="who-has", hwsrc=mac, psrc="{psrc}", pdst="{pdst}"),
             iface="eth0", timeout=2, retry=3)
print(json.dumps([{{"eth_src": r[Ether].src, "hwsrc": r[ARP].hwsrc, "psrc": r[ARP].psrc,
                   "op": int(r[ARP].op)}} for _, r in ans]))
"""


def test_arp_reply_carries_the_switch_port_mac(router_lab):
    h1 = router_lab.host(1)
    port_mac = router_lab.switch_mac(1)
    tap_mac = router_lab.tap_link(1)["address"].lower()
    assert tap_mac == port_mac, "the TAP must carry its switch port's MAC"

    replies = json.loads(router_lab.host_python(h1, ARP_WHO_HAS.format(psrc="10.0.1.2", pdst="10.0.1.1")))
    assert replies, "no ARP reply for 10.0.1.1"
    for reply in replies:
        assert reply == {"eth_src": port_mac, "hwsrc": port_mac, "psrc": "10.0.1.1", "op": 2}


def test_host_neighbour_for_gateway_is_the_switch_port_mac(router_lab):
    for host in router_lab.hosts:
        n = host.port
        router_lab.assert_ping(host, f"10.0.{n}.1", count=1)
        (entry,) = json.loads(host.run("ip", "-j", "neigh", "show", f"10.0.{n}.1", "dev", "eth0"))
        assert entry["lladdr"].lower() == router_lab.switch_mac(n)
        assert entry["lladdr"].lower() == router_lab.tap_link(n)["address"].lower()
    # Each port has its own MAC: the router is not one MAC on every port.
    macs = {router_lab.switch_mac(h.port) for h in router_lab.hosts}
    assert len(macs) == len(router_lab.hosts)
