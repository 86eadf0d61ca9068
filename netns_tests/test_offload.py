"""Offload: once a host's neighbour is resolved, transit traffic to it is forwarded by the switch
alone; no packet of it goes to the controller (a PacketIn would show in the relay's to_tap)."""

from __future__ import annotations

import re

import pytest

import ofctl
from taprouter.controller.openflow.pipeline import Table

FIB_TABLES = {4: int(Table.FIB4), 6: int(Table.FIB6)}
HOST_PRIORITY = {4: 10 + 32, 6: 10 + 128}
COUNT = 200


def host_flow(lab, address: str) -> ofctl.Flow | None:
    """The FIB's host entry for an address; None if absent."""
    version = 6 if ":" in address else 4
    found = [f for f in ofctl.with_destination(lab.flows(FIB_TABLES[version]), address)
             if f.priority == HOST_PRIORITY[version]]
    assert len(found) <= 1, f"more than one host entry for {address}: {found}"
    return found[0] if found else None


def switched(lab, address: str) -> ofctl.Flow | None:
    flow = host_flow(lab, address)
    return flow if flow and flow.actions.startswith("group:") else None


@pytest.mark.parametrize("version", [4, 6], ids=["ipv4", "ipv6"])
def test_transit_traffic_is_forwarded_by_the_switch_alone(router_lab, version):
    lab = router_lab
    h1 = lab.host(1)
    src, dst = ("10.0.1.2", "10.0.2.2") if version == 4 else ("2001:db8:1::2", "2001:db8:2::2")

    # Warm up: the first packets go through the kernel, which resolves both hosts.
    lab.assert_ping(h1, dst, count=3)
    lab.wait_until(lambda: switched(lab, dst) and switched(lab, src), timeout=10,
                   message=lambda: f"host entries with groups for {src} and {dst}:\n{lab.dump_flows()}")

    before_to_tap = lab.fresh_daemon_status()["relay"]["to_tap"]
    before = {a: switched(lab, a).n_packets for a in (src, dst)}

    result = lab.ping(h1, dst, count=COUNT, deadline=None, extra=("-i", "0.005", "-q"))
    assert result.returncode == 0, f"ping {dst} failed:\n{result.stdout}{result.stderr}"
    m = re.search(r"(\d+) packets transmitted, (\d+) received", result.stdout)
    assert m and int(m.group(1)) == COUNT, result.stdout
    received = int(m.group(2))
    assert received >= COUNT - 2, f"only {received} of {COUNT} replies:\n{result.stdout}"

    # Open vSwitch's revalidators push datapath counters to the flows a little later: poll.
    def grown():
        after = {a: switched(lab, a) for a in (src, dst)}
        assert all(after.values()), f"a host entry left the switch during the test: {after}"
        return {a: after[a].n_packets - before[a] for a in (src, dst)}

    # Requests h1 -> h2 match h2's entry, replies h2 -> h1 match h1's: >= 2 * COUNT in all.
    lab.wait_until(lambda: (g := grown())[dst] >= COUNT and g[src] >= received, timeout=10,
                   message=lambda: f"host entries' n_packets grew by {grown()} only, for {COUNT} "
                                   f"requests and {received} replies")
    assert sum(grown().values()) >= 2 * COUNT - 2

    after_to_tap = lab.fresh_daemon_status()["relay"]["to_tap"]
    # A handful at most (neighbour probes and the like); one per transit packet would be >= 400.
    assert after_to_tap - before_to_tap < 10, (
        f"{after_to_tap - before_to_tap} PacketIns were written to the TAPs during {COUNT} pings")
