"""The routing offload end to end on the in-memory table: where packets go.

Each test describes a small kernel (routes, neighbours, ports), runs the chain the daemon runs
(fibharness.Switch) and looks at where packets go: out of which port with which MACs and TTL, or to
the kernel.
"""

from __future__ import annotations

import ipaddress
from collections import Counter

import pytest

from taprouter.controller.openflow import pipeline
from taprouter.controller.openflow.groups import Bucket, GroupSpec, GroupType
from taprouter.controller.openflow.flows import DecTtl, Output, SetField, to_controller
from taprouter.controller.openflow.ops import Op
from taprouter.routing.model import (NUD_DELAY, NUD_FAILED, NUD_INCOMPLETE, NUD_NOARP, NUD_PERMANENT, NUD_PROBE,
                                     NUD_REACHABLE, NUD_STALE, NeighbourKey, Route, RouteKey, RouteKind)
from fibharness import (ETH0, EXPIRED, GW1, GW1_6, GW2, GW2_6, GW3, GW3_6, KERNEL, Kernel, MAC1, MAC2, MAC3, MAC_NEW,
                        OTHER, P1, P2, P3, Switch, dev, flows_per_group, gateways, group_of, installed, packet, via)


# --- forwarding through a gateway ----------------------------------------------------------------


@pytest.mark.parametrize("dst,route,gw", [("10.9.3.4", "10.9.0.0/16", GW1),
                                          ("2001:db8:99::5", "2001:db8:99::/48", GW1_6)])
def test_packet_behind_a_gateway_leaves_on_its_port_rewritten(dst, route, gw):
    k = gateways().route(route, via(gw, P1))
    sw = installed(k)
    pkt = packet(dst, ttl=9)
    result = sw.table.process(pkt)
    assert not result.to_controller
    (out,) = result.outputs
    assert out.port == P1.number
    assert dict(out.packet, in_port=None) == dict(pkt, eth_src=P1.mac, eth_dst=MAC1, ttl=8, in_port=None)
    # The route is one flow naming one indirect group: TTL, MACs, in_port cleared (hairpin), output.
    assert group_of(sw, route) == GroupSpec(GroupType.INDIRECT, (Bucket(0, (
        DecTtl(), SetField("eth_src", P1.mac), SetField("eth_dst", MAC1), SetField("in_port_nxm", 0),
        Output(1))),))


def test_longest_prefix_wins():
    k = gateways()
    k.route("10.9.1.0/24", via(GW1, P1)).route("10.9.0.0/16", via(GW2, P2)).route("0.0.0.0/0", via(GW3, P3))
    k.route("2001:db8:9:1::/64", via(GW1_6, P1)).route("2001:db8:9::/48", via(GW2_6, P2))
    k.route("::/0", via(GW3_6, P3))
    sw = installed(k)
    assert sw.send("10.9.1.77") == (1, MAC1)
    assert sw.send("10.9.1.0") == (1, MAC1)
    assert sw.send("10.9.1.255") == (1, MAC1)
    assert sw.send("10.9.2.1") == (2, MAC2)
    assert sw.send("10.9.0.255") == (2, MAC2)
    assert sw.send("10.10.0.1") == (3, MAC3)
    assert sw.send("8.8.8.8") == (3, MAC3)
    assert sw.send("2001:db8:9:1::7") == (1, MAC1)
    assert sw.send("2001:db8:9:2::7") == (2, MAC2)
    assert sw.send("2606:4700::1111") == (3, MAC3)
    # Remove the /24: its addresses fall back to the /16; remove the /16 too: to the default.
    sw.sync(k.unroute("10.9.1.0/24"))
    assert sw.send("10.9.1.77") == (2, MAC2)
    sw.sync(k.unroute("10.9.0.0/16"))
    assert sw.send("10.9.1.77") == (3, MAC3)


def test_no_route_goes_to_the_kernel_through_the_fib_miss():
    sw = installed(gateways().route("10.9.0.0/16", via(GW1, P1)))
    assert sw.send("192.0.2.1") == KERNEL
    assert sw.send("2001:db8:77::1") == KERNEL
    misses = [f for f in sw.table.snapshot() if f.priority == 0 and f.table in (pipeline.Table.FIB4, pipeline.Table.FIB6)]
    assert len(misses) == 2
    assert all(f.actions == (to_controller(),) and f.meter == pipeline.SLOW_PATH_METER for f in misses)


def test_router_own_addresses_are_punted_before_the_fib():
    sw = installed(gateways().route("0.0.0.0/0", via(GW1, P1)).route("::/0", via(GW1_6, P1)))
    for own in ("10.0.1.1", "10.0.3.1", "2001:db8:2::1"):
        assert sw.send(own) == KERNEL


# --- connected subnets and neighbours ------------------------------------------------------------


@pytest.mark.parametrize("family", [4, 6])
def test_connected_subnet_resolved_neighbour_forwards_others_go_to_kernel(family):
    a = (lambda i: f"10.0.1.{i}") if family == 4 else (lambda i: f"2001:db8:1::{i}")
    k = Kernel().neigh(P1, a(7), MAC1).neigh(P1, a(8), None, NUD_INCOMPLETE).neigh(P1, a(9), MAC2, NUD_STALE)
    k.neigh(P1, a(10), MAC3, NUD_FAILED)
    sw = installed(k)
    assert sw.send(a(7)) == (1, MAC1)
    assert sw.send(a(9)) == (1, MAC2)  # STALE: the kernel still uses the MAC
    for host in (a(8), a(10), a(11), a(200)):
        assert sw.send(host) == KERNEL, host
    plan = k.plan()
    host = ipaddress.ip_network(a(7))
    assert pipeline.owns_group(plan.targets[host])
    assert plan.targets[ipaddress.ip_interface(P1.addresses[0 if family == 4 else 1]).network] == pipeline.KERNEL
    assert plan.unresolved == frozenset()  # the kernel resolves hosts of its own subnets


@pytest.mark.parametrize("state", [NUD_REACHABLE, NUD_STALE, NUD_DELAY, NUD_PROBE, NUD_PERMANENT, NUD_NOARP])
def test_every_valid_neighbour_state_is_used(state):
    sw = installed(Kernel().neigh(P2, GW2, MAC2, state).route("10.9.0.0/16", via(GW2, P2)))
    assert sw.send("10.9.0.1") == (2, MAC2)
    assert sw.send(GW2) == (2, MAC2)


def test_link_local_neighbours_get_no_host_entry():
    # Even were the link-local prefixes among the connected routes (parse drops them).
    k = Kernel().neigh(P1, "fe80::1:7", MAC1).neigh(P1, "169.254.3.3", MAC1)
    k.route("fe80::/64", dev(P1), metric=256).route("169.254.0.0/16", dev(P1))
    plan = k.plan()
    assert ipaddress.ip_network("fe80::1:7/128") not in plan.targets
    assert ipaddress.ip_network("169.254.3.3/32") not in plan.targets
    assert plan.want.groups == {}


def test_neighbour_outside_every_connected_subnet_gets_no_host_entry():
    plan = Kernel().neigh(P1, "10.0.2.7", MAC1).neigh(P1, "192.0.2.9", MAC1).plan()
    assert plan.want.groups == {} and all(t == pipeline.KERNEL for t in plan.targets.values())


def test_kernel_host_route_beats_the_neighbour_host_entry():
    k = gateways().neigh(P1, "10.0.1.7", MAC1).route("10.0.1.7/32", via(GW2, P2))
    assert installed(k).send("10.0.1.7") == (2, MAC2)


@pytest.mark.parametrize("specific", ["blackhole", "via-other-port"])
def test_neighbour_host_entry_respects_a_more_specific_route(specific):
    # A host that ARPed for the router leaves a STALE entry behind, whatever the routes say.
    k = gateways().neigh(P1, "10.0.1.70", MAC_NEW, NUD_STALE)
    if specific == "blackhole":
        k.route("10.0.1.64/26", kind=OTHER)
        expected = KERNEL
    else:
        k.route("10.0.1.64/26", via(GW2, P2))
        expected = (2, MAC2)
    assert installed(k).send("10.0.1.70") == expected


@pytest.mark.parametrize("family", [4, 6])
def test_a_more_specific_route_added_later_takes_over_the_neighbours_host_entry_and_gives_it_back(family):
    """Incrementally: the new route alone is the change, so the pass must see that it lies inside a
    connected subnet (ConnectedSubnets.covers) to redo the host entries."""
    host, inside, gw = (("10.0.1.70", "10.0.1.64/26", GW2) if family == 4
                        else ("2001:db8:1::70", "2001:db8:1::40/122", GW2_6))
    k = gateways().neigh(P1, host, MAC_NEW, NUD_STALE)
    sw = installed(k)
    assert sw.send(host) == (1, MAC_NEW)
    sw.sync(k.route(inside, via(gw, P2)))
    assert sw.send(host) == (2, MAC2)
    sw.sync(k.unroute(inside))
    assert sw.send(host) == (1, MAC_NEW)


@pytest.mark.parametrize("family", [4, 6])
def test_a_connected_subnet_routed_elsewhere_loses_its_host_entries_and_gets_them_back(family):
    """Incrementally, with the connected route itself the only change: the pass must see a
    connected subnet go and come back, though the prefix is no longer than any connected one."""
    host, subnet, gw, metric = (("10.0.1.70", "10.0.1.0/24", GW2, 0) if family == 4
                                else ("2001:db8:1::70", "2001:db8:1::/64", GW2_6, 256))
    k = gateways().neigh(P1, host, MAC_NEW, NUD_STALE)
    sw = installed(k)
    assert sw.send(host) == (1, MAC_NEW)
    sw.sync(k.route(subnet, via(gw, P2), metric=metric))
    assert sw.send(host) == (2, MAC2)
    sw.sync(k.route(subnet, dev(P1), metric=metric))
    assert sw.send(host) == (1, MAC_NEW)


# --- unresolved next hops ------------------------------------------------------------------------


@pytest.mark.parametrize("family", [4, 6])
def test_unresolved_gateway_goes_to_kernel_and_is_listed(family):
    dst, net, gw = (("10.9.0.1", "10.9.0.0/16", GW1) if family == 4 else
                    ("2001:db8:99::1", "2001:db8:99::/48", GW1_6))
    k = Kernel().route(net, via(gw, P1))
    sw = Switch()
    s = sw.sync(k)
    assert sw.send(dst) == KERNEL
    assert s.unresolved == {NeighbourKey(P1.ifindex, ipaddress.ip_address(gw))}
    assert s.want.groups == {}
    # An incomplete entry is still unresolved.
    s = sw.sync(k.neigh(P1, gw, None, NUD_INCOMPLETE))
    assert sw.send(dst) == KERNEL and s.unresolved
    # It resolves: one group appears, the route's flow is modified in place to use it (and an
    # IPv4 gateway, inside P1's subnet, gets a host entry; an IPv6 link-local one does not).
    s = sw.sync(k.neigh(P1, gw, MAC1))
    assert sw.send(dst) == (1, MAC1)
    assert s.unresolved == frozenset()
    expected = Counter({"group-add": 1, "flow-modify": 1})
    if family == 4:
        expected["flow-add"] = 1
    assert s.counts() == expected


def test_neighbour_mac_change_modifies_exactly_one_group_and_no_flow():
    k = gateways()
    for i in range(20):
        k.route(f"10.{100 + i}.0.0/16", via(GW1, P1))
        k.route(f"2001:db8:{100 + i}::/48", via(GW1_6, P1))
    k.route("10.99.0.0/16", via(GW2, P2)).route("10.98.0.0/16", via(GW1, P1), via(GW2, P2))
    sw = installed(k)
    before = sw.table.snapshot()
    s = sw.sync(k.neigh(P1, GW1, MAC_NEW))
    assert s.flow_ops == [] and s.group_deletes == []
    # The IPv4 next hop's indirect group, and the ECMP group that contains it.
    assert [op.op for op in s.group_upserts] == [Op.MODIFY, Op.MODIFY]
    assert sw.table.snapshot() == before
    for i in range(20):
        assert sw.send(f"10.{100 + i}.5.5") == (1, MAC_NEW)
        assert sw.send(f"2001:db8:{100 + i}::5") == (1, MAC1)  # the IPv6 neighbour did not change
    assert sw.send("10.99.0.1") == (2, MAC2)
    assert {sw.send("10.98.0.1", sport=s) for s in range(64)} == {(1, MAC_NEW), (2, MAC2)}
    # Without the ECMP route: exactly one group changes.
    k.unroute("10.98.0.0/16")
    sw.sync(k)
    s = sw.sync(k.neigh(P1, GW1, MAC1))
    assert s.counts() == Counter({"group-modify": 1})


@pytest.mark.parametrize("loss", ["failed", "incomplete", "deleted", "mac-gone"])
def test_losing_a_neighbour_takes_its_routes_back_to_the_kernel(loss):
    k = gateways().route("10.9.0.0/16", via(GW1, P1)).route("10.8.0.0/16", via(GW1, P1))
    k.route("10.7.0.0/16", via(GW2, P2))
    sw = installed(k)
    assert sw.send("10.9.0.1") == (1, MAC1)
    if loss == "failed":
        k.neigh(P1, GW1, MAC1, NUD_FAILED)
    elif loss == "incomplete":
        k.neigh(P1, GW1, None, NUD_INCOMPLETE)
    elif loss == "deleted":
        k.unneigh(P1, GW1)
    else:
        k.neigh(P1, GW1, None, NUD_REACHABLE)
    s = sw.sync(k)
    assert sw.send("10.9.0.1") == KERNEL and sw.send("10.8.0.1") == KERNEL and sw.send(GW1) == KERNEL
    assert sw.send("10.7.0.1") == (2, MAC2)
    assert NeighbourKey(P1.ifindex, ipaddress.ip_address(GW1)) in s.unresolved
    # The two routes and the gateway's host entry: the first two modified; the host entry goes
    # with its group, which nothing else uses (the connected /24's punt covers it), in one delete.
    assert s.counts() == Counter({"flow-modify": 2, "group-delete": 1})
    # And it comes back.
    sw.sync(k.neigh(P1, GW1, MAC1))
    assert sw.send("10.9.0.1") == (1, MAC1)


# --- ECMP ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", [4, 6])
def test_ecmp_is_a_select_group_spreading_flows_over_both_next_hops(family):
    if family == 4:
        k = gateways().route("10.9.0.0/16", via(GW1, P1), via(GW2, P2))
        dst = "10.9.4.4"
    else:
        k = gateways().route("2001:db8:99::/48", via(GW1_6, P1), via(GW2_6, P2))
        dst = "2001:db8:99::4"
    sw = installed(k)
    group = group_of(sw, "10.9.0.0/16" if family == 4 else "2001:db8:99::/48")
    assert group.type is GroupType.SELECT and len(group.buckets) == 2 and all(b.weight == 1 for b in group.buckets)
    seen = Counter(sw.send(dst, sport=s) for s in range(400))
    assert set(seen) == {(1, MAC1), (2, MAC2)}
    assert min(seen.values()) > 100
    # One flow sticks to one next hop.
    assert all(sw.send(dst, sport=s) == sw.send(dst, sport=s) for s in range(20))


def test_ecmp_weights_are_honoured():
    k = gateways().route("10.9.0.0/16", via(GW1, P1, weight=1), via(GW2, P2, weight=3))
    sw = installed(k)
    assert sorted(b.weight for b in group_of(sw, "10.9.0.0/16").buckets) == [1, 3]
    seen = Counter(sw.send("10.9.0.1", sport=s)[0] for s in range(2000))
    assert 0.65 < seen[2] / 2000 < 0.85


@pytest.mark.parametrize("family", [4, 6])
def test_partial_ecmp_uses_the_resolved_next_hop(family):
    if family == 4:
        k = Kernel().neigh(P2, GW2, MAC2).route("10.9.0.0/16", via(GW1, P1), via(GW2, P2))
        dst, missing = "10.9.0.1", GW1
    else:
        k = Kernel().neigh(P2, GW2_6, MAC2).route("2001:db8:99::/48", via(GW1_6, P1), via(GW2_6, P2))
        dst, missing = "2001:db8:99::1", GW1_6
    sw = Switch()
    s = sw.sync(k)
    assert {sw.send(dst, sport=p) for p in range(64)} == {(2, MAC2)}
    assert s.unresolved == {NeighbourKey(P1.ifindex, ipaddress.ip_address(missing))}
    # One group for the hop set, with a bucket for the resolved member only.
    group = group_of(sw, "10.9.0.0/16" if family == 4 else "2001:db8:99::/48")
    assert group.type is GroupType.SELECT and len(group.buckets) == 1
    # Once it resolves, both are used.
    sw.sync(k.neigh(P1, missing, MAC1))
    assert {sw.send(dst, sport=p) for p in range(64)} == {(1, MAC1), (2, MAC2)}


def test_identical_next_hop_sets_share_one_group():
    k = gateways().route("10.9.0.0/16", via(GW1, P1), via(GW2, P2)).route("10.8.0.0/16", via(GW2, P2), via(GW1, P1))
    s = Switch().sync(k)
    selects = [gid for gid, g in s.want.groups.items() if g.type is GroupType.SELECT]
    assert len(selects) == 1
    assert flows_per_group(s.want.flows)[selects[0]] == 2


# --- TTL -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("dst", ["10.9.0.1", "2001:db8:99::1", "10.0.1.7"])
def test_ttl_expiry_goes_to_the_kernel_as_the_packet_arrived(dst):
    k = gateways().route("10.9.0.0/16", via(GW1, P1)).route("2001:db8:99::/48", via(GW1_6, P1))
    sw = installed(k.neigh(P1, "10.0.1.7", MAC2))
    assert sw.send(dst, ttl=2)[0] == 1
    for ttl in (1, 0):
        # Still addressed to the router: the kernel takes it and sends time-exceeded.
        assert sw.send(dst, ttl=ttl) == EXPIRED


def test_ttl_one_to_a_kernel_route_goes_to_the_kernel_unchanged():
    sw = installed(Kernel().route("10.9.0.0/16", via(GW1, P1)))
    assert sw.send("10.9.0.1", ttl=1) == KERNEL


# --- route selection -----------------------------------------------------------------------------


@pytest.mark.parametrize("family", [4, 6])
def test_lower_metric_wins(family):
    net, dst, (g1, g2) = (("10.9.0.0/16", "10.9.0.1", (GW1, GW2)) if family == 4 else
                          ("2001:db8:99::/48", "2001:db8:99::1", (GW1_6, GW2_6)))
    k = gateways().route(net, via(g1, P1), metric=100).route(net, via(g2, P2), metric=50)
    sw = installed(k)
    assert sw.send(dst) == (2, MAC2)
    sw.sync(k.unroute(net, metric=50))
    assert sw.send(dst) == (1, MAC1)
    sw.sync(k.route(net, via(g2, P2), metric=150))
    assert sw.send(dst) == (1, MAC1)


@pytest.mark.parametrize("family", [4, 6])
def test_blackhole_goes_to_the_kernel_even_under_a_forwarding_route(family):
    if family == 4:
        k = gateways().route("0.0.0.0/0", via(GW1, P1)).route("10.66.0.0/16", kind=OTHER)
        k.route("10.66.7.0/24", via(GW2, P2))
        inside, nested, outside = "10.66.1.1", "10.66.7.1", "10.67.0.1"
    else:
        k = gateways().route("::/0", via(GW1_6, P1)).route("2001:db8:66::/48", kind=OTHER)
        k.route("2001:db8:66:7::/64", via(GW2_6, P2))
        inside, nested, outside = "2001:db8:66:1::1", "2001:db8:66:7::1", "2001:db8:67::1"
    sw = installed(k)
    assert sw.send(inside) == KERNEL
    assert sw.send(nested) == (2, MAC2)
    assert sw.send(outside) == (1, MAC1)


def test_other_route_goes_to_the_kernel_whatever_next_hops_it_carries():
    k = gateways()
    dst = ipaddress.ip_network("10.66.0.0/16")
    k.routes[RouteKey(dst, 0)] = Route(dst, 0, OTHER, (via(GW1, P1),))
    assert installed(k).send("10.66.0.1") == KERNEL


def test_other_route_with_the_lower_metric_shadows_a_unicast_one():
    k = gateways().route("10.66.0.0/16", kind=OTHER, metric=10).route("10.66.0.0/16", via(GW1, P1), metric=20)
    sw = installed(k)
    assert sw.send("10.66.0.1") == KERNEL
    sw.sync(k.unroute("10.66.0.0/16", metric=10))
    assert sw.send("10.66.0.1") == (1, MAC1)


def test_route_over_an_interface_off_the_switch_goes_to_the_kernel():
    k = gateways().neigh(ETH0, "192.168.0.1", MAC3).neigh(ETH0, "192.168.0.5", MAC3)
    k.route("192.168.0.0/24", dev(ETH0)).route("10.9.0.0/16", via("192.168.0.1", ETH0))
    k.route("10.8.0.0/16", via("192.168.0.1", ETH0), via(GW1, P1))  # ECMP half off the switch
    sw = Switch()
    s = sw.sync(k)
    for dst in ("10.9.0.1", "10.8.0.1", "192.168.0.5", "192.168.0.1"):
        assert sw.send(dst) == KERNEL, dst
    # Only the gateways' host entries have groups: nothing leads off the switch.
    assert len(s.want.groups) == 3


def test_ipv4_route_via_an_ipv6_gateway_goes_to_the_kernel():
    k = gateways().route("10.9.0.0/16", via(GW1_6, P1))
    assert installed(k).send("10.9.0.1") == KERNEL


def test_route_without_next_hops_goes_to_the_kernel():
    k = gateways()
    k.routes[RouteKey(ipaddress.ip_network("10.9.0.0/16"), 0)] = Route(
        ipaddress.ip_network("10.9.0.0/16"), 0, RouteKind.UNICAST, ())
    assert installed(k).send("10.9.0.1") == KERNEL


# --- ports down and linkdown next hops -------------------------------------------------------------


def test_route_over_a_port_whose_switch_link_is_down_goes_to_the_kernel():
    k = gateways().route("10.9.0.0/16", via(GW1, P1)).route("10.8.0.0/16", via(GW2, P2))
    sw = installed(k)
    assert sw.send("10.9.0.1") == (1, MAC1)
    sw.sync(k.set_up(P1, False))
    assert sw.send("10.9.0.1") == KERNEL
    assert sw.send("10.8.0.1") == (2, MAC2)
    sw.sync(k.set_up(P1, True))
    assert sw.send("10.9.0.1") == (1, MAC1)


def test_ecmp_never_uses_a_port_whose_switch_link_is_down():
    k = gateways().route("10.9.0.0/16", via(GW1, P1), via(GW2, P2))
    sw = installed(k.set_up(P1, False))
    seen = {sw.send("10.9.0.1", sport=s) for s in range(64)}
    # Either the kernel forwards (it skips the linkdown TAP) or the switch uses the live half.
    assert seen in ({KERNEL}, {(2, MAC2)})


@pytest.mark.parametrize("family", [4, 6])
def test_host_entry_on_a_port_whose_switch_link_is_down_is_not_used(family):
    host = "10.0.1.7" if family == 4 else "2001:db8:1::7"
    k = Kernel().neigh(P1, host, MAC1)
    sw = installed(k)
    assert sw.send(host) == (1, MAC1)
    sw.sync(k.set_up(P1, False))
    assert sw.send(host) == KERNEL


def test_linkdown_next_hop_is_not_used():
    k = gateways().route("10.9.0.0/16", via(GW1, P1, linkdown=True))
    k.route("10.8.0.0/16", via(GW1, P1, linkdown=True), via(GW2, P2))
    k.route("2001:db8:99::/48", via(GW1_6, P1, linkdown=True), via(GW2_6, P2))
    sw = installed(k)
    assert sw.send("10.9.0.1") == KERNEL
    assert {sw.send("10.8.0.1", sport=s) for s in range(64)} == {(2, MAC2)}
    assert {sw.send("2001:db8:99::1", sport=s) for s in range(64)} == {(2, MAC2)}


def test_linkdown_connected_route_gives_no_host_entries():
    k = Kernel().neigh(P2, "10.0.2.7", MAC2)
    k.route("10.0.2.0/24", dev(P2, linkdown=True))
    assert installed(k).send("10.0.2.7") == KERNEL


def test_hairpin_route_back_out_of_the_ingress_port():
    # Hosts on P1 use this router as default gateway; 10.9/16 is behind another router on P1.
    k = gateways().route("10.9.0.0/16", via(GW1, P1))
    sw = installed(k)
    assert sw.send("10.9.0.1", in_port=P1) in ((1, MAC1), KERNEL)
