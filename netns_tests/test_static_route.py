"""A static route added with `ip` in the router netns is offloaded like any other: a network behind
h2 becomes a FIB entry with a group; deleting the route removes the entry and the reachability."""

from __future__ import annotations

import ofctl
from taprouter.controller.openflow.pipeline import Table

NETWORK = "10.99.0.0/24"
BEHIND_H2 = "10.99.0.1"
VIA = "10.0.2.2"
PRIORITY = 10 + 24


def route_flow(lab) -> ofctl.Flow | None:
    """The IPv4 FIB's entry for the network, or None."""
    found = ofctl.with_destination(lab.flows(Table.FIB4), NETWORK)
    assert len(found) <= 1, f"more than one FIB entry for {NETWORK}: {found}"
    return found[0] if found else None


def group_flow(lab) -> ofctl.Flow | None:
    flow = route_flow(lab)
    return flow if flow and flow.group is not None else None


def test_static_route_via_a_host_is_offloaded_and_withdrawn(router_lab):
    lab = router_lab
    h1, h2 = lab.host(1), lab.host(2)
    h2.run("ip", "addr", "add", f"{BEHIND_H2}/24", "dev", "lo")

    # Without the route the router cannot reach the network, and the switch has no entry for it.
    result = lab.ping(h1, BEHIND_H2, count=1, deadline=None)
    assert result.returncode != 0, f"{BEHIND_H2} reachable before the route exists:\n{result.stdout}"
    assert route_flow(lab) is None

    lab.in_router("ip", "route", "add", NETWORK, "via", VIA)
    # Nobody has sent traffic to 10.0.2.2 yet: the daemon has the kernel resolve the next hop,
    # and the entry moves from the kernel (controller) onto a group.
    flow = lab.wait_until(lambda: group_flow(lab), timeout=15,
                          message=lambda: f"a group entry for {NETWORK} in the IPv4 FIB table:\n{lab.dump_flows()}")
    assert flow.priority == PRIORITY, flow
    group_id = flow.group
    group = lab.groups().get(group_id)
    desc = group.line if group else "(not on the switch)"
    assert (f"set_field:{lab.host_mac(h2)}->eth_dst" in desc and f"set_field:{lab.switch_mac(2)}->eth_src"
            in desc and "output:2" in desc and "dec_ttl" in desc), f"group {group_id}:\n{desc}"

    before = flow.n_packets
    lab.assert_ping(h1, BEHIND_H2, count=5)
    lab.wait_until(lambda: (f := group_flow(lab)) and f.n_packets >= before + 5, timeout=10,
                   message=lambda: f"{NETWORK}'s entry did not count the pings: {before} -> {route_flow(lab)}")

    lab.in_router("ip", "route", "del", NETWORK, "via", VIA)
    lab.wait_until(lambda: route_flow(lab) is None, timeout=10,
                   message=lambda: f"{NETWORK}'s entry still on the switch:\n{lab.dump_flows()}")
    result = lab.ping(h1, BEHIND_H2, count=2, deadline=None)
    assert result.returncode != 0, f"{BEHIND_H2} still reachable after the route was deleted:\n{result.stdout}"
    assert " 0 received" in result.stdout, result.stdout
    # h2 itself is still reachable: only the route went away.
    lab.assert_ping(h1, VIA)
