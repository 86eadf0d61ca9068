"""Withdrawals: prefixes that lose their route leave the switch, or go back to a host entry, and
their next hops stop being asked for (FibState._withdraw, GroupBooks.release and forget)."""

from __future__ import annotations

import ipaddress
from collections import Counter

import pytest

from taprouter import prefix as pfx
from fibharness import GW1, GW1_6, GW2, MAC1, MAC2, P1, P2, Kernel, Switch, gateways, installed, via


def test_a_withdrawn_host_route_gives_the_neighbours_host_entry_back():
    k = gateways().neigh(P1, "10.0.1.7", MAC1).route("10.0.1.7/32", via(GW2, P2))
    sw = installed(k)
    assert sw.send("10.0.1.7") == (2, MAC2)
    s = sw.sync(k.unroute("10.0.1.7/32"))
    assert sw.send("10.0.1.7") == (1, MAC1)
    assert s.counts()["flow-modify"] == 1 and "flow-delete" not in s.counts()  # the flow stays, retargeted


@pytest.mark.parametrize("family", [4, 6])
def test_withdrawing_the_routes_of_an_unresolved_gateway_stops_asking_for_it(family):
    nets, gw = ((["10.9.0.0/16", "10.8.0.0/16"], GW1) if family == 4 else
                (["2001:db8:99::/48", "2001:db8:98::/48"], GW1_6))
    k = Kernel()
    for net in nets:
        k.route(net, via(gw, P1))
    sw = Switch()
    assert sw.sync(k).unresolved
    s = sw.sync(k.unroute(nets[0]))
    assert s.unresolved and s.counts() == Counter({"flow-delete": 1})
    s = sw.sync(k.unroute(nets[1]))
    assert s.unresolved == frozenset() and s.counts() == Counter({"flow-delete": 1})


def test_a_host_entry_left_dirty_without_a_route_stays_as_it_is():
    """A /32 route that came and went between two passes leaves its prefix dirty and without a
    route, and the connected subnets unchanged: the neighbour's host entry must stay."""
    k = gateways().neigh(P1, "10.0.1.7", MAC1)
    sw = installed(k)
    host = pfx.pack(4, int(ipaddress.ip_address("10.0.1.7")), 32)
    target = sw.fib.targets[host]
    changes = sw.fib.sync(k.mirror(), k.state(), k.bindings(), (), False, False, gone=[host])
    assert changes.routes == [] and sw.fib.targets[host] == target
    assert sw.send("10.0.1.7") == (1, MAC1)


def test_a_prefix_gone_twice_within_one_pass_is_deleted_once():
    """The mirror lists a prefix in `gone` each time it lost its route."""
    k = gateways().route("10.9.0.0/16", via(GW2, P2)).route("10.8.0.0/16", via(GW2, P2))
    sw = installed(k)
    kept, twice = (pfx.pack(4, int(ipaddress.ip_address(n)), 16) for n in ("10.9.0.0", "10.8.0.0"))
    target = sw.fib.targets[kept]
    changes = sw.fib.sync(k.unroute("10.8.0.0/16").mirror(), k.state(), k.bindings(), (), False, False,
                          gone=[twice, twice])
    assert [(op.value, pk) for op, pk, _ in changes.routes] == [("delete", twice)]
    assert sw.fib.targets[kept] == target and twice not in sw.fib.targets
