"""A host scanning unresolved addresses costs only its own port: h1 sends UDP as fast as a raw socket
can to 200 addresses of h3's subnet that nobody holds (each a FIB miss to the kernel, which asks for
it by ARP), and meanwhile h2 starts traffic to h3 after the router forgot h3's MAC, so that its first
packets must reach the kernel as FIB misses too. Before FIB misses were policed per port, one meter
(2,000 pps) carried every port's misses, and h1's flood took nearly all of it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time

from routerlab import PYTHON, run, wait_until
from ofctl import with_destination

SCAN = 200  # unresolved destinations, 10.0.3.50-249
ROUNDS = 15  # h2 -> h3 after the router forgot h3: one ping, 1 s to answer
PINGS, PING_INTERVAL = 300, 0.01  # and a run of 3 s of pings at 100 pps, started the same way
FLOOD = """
import signal, socket, sys, time
from scapy.all import IP, UDP, Ether, get_if_hwaddr
gateway_mac, first, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
mine = get_if_hwaddr("eth0")
frames = [bytes(Ether(src=mine, dst=gateway_mac) / IP(src="10.0.1.2", dst=f"10.0.3.{first + i}")
                / UDP(sport=40000, dport=9)) for i in range(count)]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
sent, start = 0, time.monotonic()
while not stop:
    for frame in frames:
        try:
            s.send(frame)
            sent += 1
        except OSError:
            pass
print(sent, time.monotonic() - start)
"""


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def forget_h3(lab) -> None:
    """The router's neighbour entry for h3 goes, and with it h3's host flow: the next packet to h3
    is a FIB miss (the connected /24) and the kernel must resolve h3 again."""
    lab.in_router("ip", "neigh", "flush", "to", "10.0.3.2")
    wait_until(lambda: not any("group" in f.actions for f in with_destination(lab.flows(3), "10.0.3.2")),
               timeout=10, interval=0.05)


def ping(host, address: str, count: int, interval: float, wait: float) -> int:
    out = run("ping", "-n", "-q", "-c", str(count), "-i", str(interval), "-W", str(wait), address,
              netns=host.name, check=False, timeout=count * interval + wait + 30).stdout
    match = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    assert match, out
    return int(match.group(2))


def test_a_scan_of_unresolved_addresses_does_not_starve_resolution_from_other_ports(router_lab):
    lab = router_lab
    h1, h2, h3 = lab.host(1), lab.host(2), lab.host(3)
    for host in (h1, h2, h3):
        lab.assert_ping(host, f"10.0.{host.port}.1", count=1)
    lab.assert_ping(h2, "10.0.3.2", count=1)
    (gateway,) = json.loads(h1.run("ip", "-json", "neigh", "show", "10.0.1.1"))
    cpu_before, started = cpu_seconds(lab.proc.pid), time.monotonic()
    flood = subprocess.Popen(["ip", "netns", "exec", h1.name, PYTHON, "-c", FLOOD, gateway["lladdr"], "50",
                              str(SCAN)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1)  # the flood at full rate, the kernel's neighbour table filling with h1's misses
        answered = 0
        for _ in range(ROUNDS):
            forget_h3(lab)
            answered += ping(h2, "10.0.3.2", 1, 0.2, 1) == 1
        forget_h3(lab)
        run_received = ping(h2, "10.0.3.2", PINGS, PING_INTERVAL, 1)
        elapsed = time.monotonic() - started
        cpu = cpu_seconds(lab.proc.pid) - cpu_before
        incomplete = sum(1 for n in lab.router_neighbours() if n.get("dst", "").startswith("10.0.3.")
                         and n.get("dst") != "10.0.3.2")
    finally:
        if flood.poll() is None:
            flood.terminate()
        out, err = flood.communicate(timeout=30)
    assert flood.returncode == 0, err
    sent, seconds = out.split()
    rate = int(sent) / float(seconds)
    print(f"h1 scanned {SCAN} unresolved addresses at {rate:.0f} frames/s for {float(seconds):.1f} s "
          f"({incomplete} neighbour entries of them in the router); h2 -> h3 after the router forgot h3: "
          f"{answered} of {ROUNDS} single pings answered, a run of {PINGS} lost {PINGS - run_received}; "
          f"daemon CPU {100 * cpu / elapsed:.0f}% of a core over {elapsed:.1f} s")
    assert incomplete > 0, "h1's scan never reached the router's kernel"
    assert answered >= ROUNDS - 1, f"h2 -> h3 resolved in {answered} of {ROUNDS} rounds under h1's scan"
    assert PINGS - run_received < 0.05 * PINGS, f"h2 -> h3 lost {PINGS - run_received} of {PINGS} under h1's scan"
