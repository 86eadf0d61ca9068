"""Transit traffic to many destinations behind one route costs Open vSwitch one datapath flow, for
IPv6 as for IPv4: the lab's bridge tracks destination prefixes in the pipeline's tables
(labkit.netdev.prefix_tracking). Without ipv6_dst tracked, each IPv6 destination became a datapath flow of
its own, as the punt table matches the router's addresses exactly."""

from __future__ import annotations

import pytest

import ofctl
from routerlab import run

DESTINATIONS = 20
# family: (the network behind h2, its next hop, its addresses, how they start as the dumps print them)
NETWORKS = {4: ("10.99.0.0/16", "10.0.2.2", "10.99.0.{}", "10.99."),
            6: ("2001:db8:99::/48", "2001:db8:2::2", "2001:db8:99::{:x}", "2001:db8:99:")}


def transit_flows(lab, family: int, network_start: str) -> list[str]:
    """Datapath flows from h1's port towards the network (the datapath is shared by every bridge:
    flows are told apart by port name)."""
    out = run("ovs-appctl", "dpctl/dump-flows", "-m", "netdev@ovs-netdev").stdout.splitlines()
    key = f"ipv{family}("
    return [line for line in out if f"in_port({lab.lab.switch_veth(1)})" in line and key in line
            and f"dst={network_start}" in line.split(key, 1)[1]]


@pytest.mark.parametrize("family", [4, 6])
def test_transit_to_many_destinations_is_one_datapath_flow(router_lab, family):
    lab = router_lab
    h1, h2 = lab.host(1), lab.host(2)
    network, via, address, start = NETWORKS[family]
    # h2 answers for every address of the network.
    h2.run("ip", f"-{family}", "route", "add", "local", network, "dev", "lo")
    lab.in_router("ip", f"-{family}", "route", "add", network, "via", via)
    lab.wait_until(lambda: ofctl.with_destination(lab.flows(), network), timeout=15,
                   message=lambda: f"a FIB entry for {network}:\n{lab.dump_flows()}")
    lab.assert_ping(h1, via, count=2)  # the next hop resolved: the route is on a group
    targets = [address.format(i) for i in range(1, DESTINATIONS + 1)]
    script = "; ".join(f"ping -n -c 1 -W 1 {target} >/dev/null && echo ok" for target in targets)
    answered = run("sh", "-c", script, netns=h1.name, check=False, timeout=120).stdout.split()
    assert len(answered) == DESTINATIONS, f"{len(answered)} of {DESTINATIONS} destinations answered"
    # Megaflows stay 10 s after their last packet; the pings took well under that.
    flows = transit_flows(lab, family, start)
    assert 1 <= len(flows) <= 2, "\n".join(flows)
