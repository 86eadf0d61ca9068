"""Traceroute through an offloaded route: the TTL expires in the switch's dec_ttl, the PacketIn
(reason invalid TTL) goes to the kernel through the TAP, and the kernel answers time-exceeded."""

from __future__ import annotations

import re

import pytest

import ofctl
from taprouter.controller.openflow.pipeline import Table

FAMILIES = {
    "ipv4": {"src": "10.0.1.2", "dst": "10.0.2.2", "gateway": "10.0.1.1", "table": int(Table.FIB4), "priority": 42,
             "flag": "-4"},
    "ipv6": {"src": "2001:db8:1::2", "dst": "2001:db8:2::2", "gateway": "2001:db8:1::1", "table": int(Table.FIB6),
             "priority": 138, "flag": "-6"},
}


def host_flow(lab, family: dict, address: str) -> ofctl.Flow | None:
    """The host entry for an address if it forwards to a group."""
    return next((f for f in ofctl.with_destination(lab.flows(family["table"]), address)
                 if f.priority == family["priority"] and f.group is not None), None)


def time_exceeded_sent(lab, name: str) -> int:
    """ICMP(v6) time-exceeded messages the router's kernel has sent."""
    if name == "ipv4":
        lines = [line.split() for line in lab.in_router("cat", "/proc/net/snmp").stdout.splitlines()
                 if line.startswith("Icmp:")]
        return int(dict(zip(lines[0][1:], lines[1][1:]))["OutTimeExcds"])
    counters = dict(line.split() for line in lab.in_router("cat", "/proc/net/snmp6").stdout.splitlines()
                    if line.strip())
    return int(counters["Icmp6OutTimeExcds"])


def hops(output: str) -> dict[int, str]:
    """Hop number -> the address that answered it ('*' if none), from `traceroute -n -q 1`."""
    found = {}
    for line in output.splitlines():
        m = re.match(r"\s*(\d+)\s+(\S+)", line)
        if m:
            found[int(m.group(1))] = m.group(2)
    return found


@pytest.mark.parametrize("method", ["udp", "icmp"])
@pytest.mark.parametrize("name", ["ipv4", "ipv6"])
def test_traceroute_through_an_offloaded_route(router_lab, name, method):
    lab = router_lab
    family = FAMILIES[name]
    h1 = lab.host(1)

    # Offload the route first: both host entries on the switch, pointing at groups.
    lab.assert_ping(h1, family["dst"], count=3)
    lab.wait_until(lambda: host_flow(lab, family, family["dst"]) and host_flow(lab, family, family["src"]),
                   timeout=10, message=lambda: f"host entries for {family['dst']} and {family['src']}:\n"
                                               f"{lab.dump_flows()}")
    before = host_flow(lab, family, family["dst"]).n_packets
    to_tap_before = lab.fresh_daemon_status()["relay"]["to_tap"]

    exceeded_before = time_exceeded_sent(lab, name)
    # One probe at a time (-N 1), so that the probes counted below are exactly hops 1 and 2.
    cmd = ["traceroute", family["flag"], "-n", "-q", "1", "-w", "1", "-m", "5", "-N", "1"]
    if method == "icmp":
        cmd.append("-I")
    result = h1.run(*cmd, family["dst"], check=False, timeout=30)
    found = hops(result)
    assert found.get(1) == family["gateway"], f"hop 1 is not the router's {family['gateway']}:\n{result}"
    assert found.get(2) == family["dst"], f"hop 2 is not {family['dst']}:\n{result}"
    assert max(found) == 2, f"traceroute went past the destination:\n{result}"

    # The probes crossed the switch's host entry: the TTL-1 probe expired in its group's dec_ttl
    # (so it reached the kernel as a PacketIn) and the TTL-2 probe was forwarded by the switch.
    lab.wait_until(lambda: host_flow(lab, family, family["dst"]).n_packets >= before + 2, timeout=10,
                   message=lambda: f"the host entry for {family['dst']} did not count the probes: "
                                   f"{before} -> {host_flow(lab, family, family['dst'])}")
    assert lab.fresh_daemon_status()["relay"]["to_tap"] > to_tap_before, \
        "the expired probe never reached a TAP"
    # And the router's kernel, not anything else, answered it.
    assert time_exceeded_sent(lab, name) > exceeded_before, "the router's kernel sent no time-exceeded"
