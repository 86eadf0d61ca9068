"""Floods to the router from one host cost only that host's port: h1 floods the router's address
(ICMP echo, UDP to a closed port, ARP requests) as fast as a raw socket sends, and meanwhile h2 and
h3 ping the router and h3 asks for the router's MAC with single ARP requests; each loses under 5 %. Before the
punt meters were per port, one shared meter let h1's flood take most of the others' share."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time

import pytest

from routerlab import PYTHON, run

FLOOD_SECONDS = 8
PINGS, PING_INTERVAL = 400, 0.01  # 4 s of pings at 100 pps, inside the flood
ARP_ROUNDS = 40
FLOOD = """
import socket, sys, time
from scapy.all import ARP, ICMP, IP, UDP, Ether, get_if_hwaddr
kind, gateway_mac, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
mine = get_if_hwaddr("eth0")
if kind == "arp":
    frame = Ether(src=mine, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=mine, psrc="10.0.1.2", pdst="10.0.1.1")
elif kind == "udp":
    frame = Ether(src=mine, dst=gateway_mac) / IP(src="10.0.1.2", dst="10.0.1.1") / UDP(sport=40000, dport=9)
else:
    frame = Ether(src=mine, dst=gateway_mac) / IP(src="10.0.1.2", dst="10.0.1.1") / ICMP(id=7) / (b"x" * 32)
frame = bytes(frame)
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
sent, end = 0, time.monotonic() + seconds
while time.monotonic() < end:
    for _ in range(200):
        try:
            s.send(frame)
            sent += 1
        except OSError:
            pass
print(sent)
"""


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ping_loss(lab, host, address: str) -> subprocess.Popen:
    return subprocess.Popen(["ip", "netns", "exec", host.name, "ping", "-n", "-q", "-c", str(PINGS), "-i",
                             str(PING_INTERVAL), "-W", "1", address], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def received(proc: subprocess.Popen) -> int:
    out, err = proc.communicate(timeout=PINGS * PING_INTERVAL + 30)
    match = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    assert match, out + err
    return int(match.group(2))


ARP_ASK = """
import sys
from scapy.all import ARP, Ether, conf, get_if_hwaddr, srp1
conf.verb = 0
mine = get_if_hwaddr("eth0")
ask = Ether(src=mine, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=mine, psrc=sys.argv[1], pdst=sys.argv[2])
print(sum(srp1(ask, iface="eth0", timeout=0.5) is not None for _ in range(int(sys.argv[3]))))
"""


def arp_rounds(lab, host, address: str) -> int:
    """How many of ARP_ROUNDS single ARP requests (no retry) for `address` the router answered."""
    out = run(PYTHON, "-c", ARP_ASK, f"10.0.{host.port}.2", address, str(ARP_ROUNDS), netns=host.name,
              timeout=ARP_ROUNDS + 30).stdout
    return int(out.split()[-1])


@pytest.mark.parametrize("kind", ["icmp", "udp", "arp"])
def test_one_hosts_flood_does_not_starve_the_others(router_lab, kind):
    lab = router_lab
    h1, h2, h3 = lab.host(1), lab.host(2), lab.host(3)
    for host in (h1, h2, h3):
        lab.assert_ping(host, f"10.0.{host.port}.1", count=1)
    (gateway,) = json.loads(h1.run("ip", "-json", "neigh", "show", "10.0.1.1"))
    daemon_cpu = cpu_seconds(lab.proc.pid)
    started = time.monotonic()
    flood = subprocess.Popen(["ip", "netns", "exec", h1.name, PYTHON, "-c", FLOOD, kind, gateway["lladdr"],
                              str(FLOOD_SECONDS)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1)  # the flood at full rate
        pings = {"h2 -> 10.0.2.1": ping_loss(lab, h2, "10.0.2.1"), "h3 -> 10.0.1.1": ping_loss(lab, h3, "10.0.1.1")}
        resolved = arp_rounds(lab, h3, "10.0.3.1")
        got = {name: received(proc) for name, proc in pings.items()}
        out, err = flood.communicate(timeout=FLOOD_SECONDS + 30)
    finally:
        if flood.poll() is None:
            flood.kill()
            flood.wait()
    elapsed = time.monotonic() - started
    assert flood.returncode == 0, err
    sent = int(out.split()[-1])
    cpu = cpu_seconds(lab.proc.pid) - daemon_cpu
    print(f"{kind} flood from h1: {sent / FLOOD_SECONDS:.0f} frames/s for {FLOOD_SECONDS} s; "
          + "; ".join(f"{name} lost {PINGS - n} of {PINGS}" for name, n in got.items())
          + f"; the router answered {resolved} of {ARP_ROUNDS} ARP requests from h3; daemon CPU {100 * cpu / elapsed:.0f}% "
          f"of a core over {elapsed:.1f} s")
    for name, n in got.items():
        assert PINGS - n < 0.05 * PINGS, f"{name}: {PINGS - n} of {PINGS} lost to h1's {kind} flood"
    assert resolved >= ARP_ROUNDS * 0.95, f"the router answered {resolved} of {ARP_ROUNDS} ARP requests from h3"
