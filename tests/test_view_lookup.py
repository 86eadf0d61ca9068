"""/v1/lookup's pure parts (controller/lookup.py): the longest match in the planner's FIB, the switch's
entry and group as the daemon's own Planner wrote them (fibharness), the kernel's pick from
`ip -json -details route show match` output as iproute2 prints it, and whether the two agree."""

from __future__ import annotations

import ipaddress

import pytest

from fibharness import GW1, GW1_6, GW2, MAC1, MAC2, MAC3, P1, P2, P3, PORTS, Kernel, Switch, gateways, via
from taprouter import prefix as pfx
from taprouter.controller import lookup
from taprouter.routing import netlink
from taprouter.controller.openflow.pipeline import FIB_PRIORITY_BASE, KERNEL, Table
from taprouter.mac import int_to_mac
from taprouter.routing.model import NUD_FAILED

TAP_OF_PORT = {(p.number, 0): p.name for p in PORTS}
PORT_OF_TAP = {p.name: p.number for p in PORTS}
M1, M2, M3 = (int_to_mac(m) for m in (MAC1, MAC2, MAC3))
HOST1_6 = "2001:db8:1::2"  # the host behind GW1_6: the same MAC, its global address


def ip(text: str):
    return ipaddress.ip_address(text)


def table(*entries: tuple[str, object]) -> dict[int, object]:
    return {pfx.from_network(ipaddress.ip_network(net)): value for net, value in entries}


# --- longest_match ---------------------------------------------------------------------------------


@pytest.mark.parametrize("address, found", [
    ("10.1.2.3", "10.1.2.3/32"), ("10.1.2.4", "10.1.2.0/24"), ("10.1.3.1", "10.0.0.0/8"),
    ("192.0.2.1", "0.0.0.0/0"),
    ("2001:db8:1::5", "2001:db8:1::5/128"), ("2001:db8:1::6", "2001:db8:1::/64"), ("2001:db8:2::1", "2001:db8::/32"),
    ("2001:db9::1", None),  # no IPv6 default; the IPv4 one is not it
])
def test_longest_match_both_families(address, found):
    fib = table(("0.0.0.0/0", "v4 default"), ("10.0.0.0/8", "a"), ("10.1.2.0/24", "b"), ("10.1.2.3/32", "c"),
                ("2001:db8::/32", "d"), ("2001:db8:1::/64", "e"), ("2001:db8:1::5/128", "f"))
    hit = lookup.longest_match(fib, ip(address))
    if found is None:
        assert hit is None
    else:
        pk, value = hit
        assert pfx.to_network(pk) == ipaddress.ip_network(found)
        assert value == fib[pk]


def test_longest_match_sees_a_zero_target():
    """KERNEL is 0, a falsy value: it is still an entry."""
    pk, value = lookup.longest_match(table(("10.0.0.0/8", KERNEL)), ip("10.9.9.9"))
    assert value == KERNEL and pfx.length(pk) == 8


# --- switch_entry, from what the Planner put on the switch ----------------------------------------


def programmed(kernel: Kernel) -> Switch:
    switch = Switch()
    switch.sync(kernel)
    return switch


def entry(switch: Switch, kernel: Kernel, address: str) -> dict:
    fib = switch.fib
    hopsets = {gid: shards.hopset for gid, shards in fib.books.owner.items()}
    return lookup.switch_entry(fib.targets, fib.switch_groups, ip(address), TAP_OF_PORT, kernel.state(), hopsets)


def test_a_resolved_host_is_its_own_entry_on_an_indirect_group():
    kernel = gateways()
    switch = programmed(kernel)
    found = entry(switch, kernel, GW2)
    assert found["prefix"] == f"{GW2}/32" and found["table"] == int(Table.FIB4)
    assert found["priority"] == FIB_PRIORITY_BASE + 32
    assert found["target"] == "group" and found["group_type"] == "indirect"
    assert found["group"] in switch.fib.switch_groups
    assert found["next_hops"] == [{"via": GW2, "port": 2, "tap": "tap2", "mac": M2}]


def test_a_route_via_a_gateway_and_an_ecmp_route_in_both_families():
    kernel = gateways()
    kernel.route("10.50.0.0/16", via(GW1, P1))
    kernel.route("10.60.0.0/16", via(GW1, P1), via(GW2, P2))
    kernel.route("2001:db8:60::/48", via(GW1_6, P1), via("fe80::3:2", P3))
    switch = programmed(kernel)

    single = entry(switch, kernel, "10.50.7.7")
    assert single["prefix"] == "10.50.0.0/16" and single["priority"] == FIB_PRIORITY_BASE + 16
    assert single["group_type"] == "indirect"
    assert single["next_hops"] == [{"via": GW1, "port": 1, "tap": "tap1", "mac": M1}]

    ecmp = entry(switch, kernel, "10.60.0.1")
    assert ecmp["target"] == "group" and ecmp["group_type"] == "select"
    assert sorted(ecmp["next_hops"], key=lambda h: h["port"]) == [
        {"via": GW1, "port": 1, "tap": "tap1", "mac": M1}, {"via": GW2, "port": 2, "tap": "tap2", "mac": M2}]

    six = entry(switch, kernel, "2001:db8:60::1")
    assert six["table"] == int(Table.FIB6) and six["prefix"] == "2001:db8:60::/48"
    assert six["priority"] == FIB_PRIORITY_BASE + 48 and six["group_type"] == "select"
    assert sorted(six["next_hops"], key=lambda h: h["port"]) == [
        {"via": GW1_6, "port": 1, "tap": "tap1", "mac": M1}, {"via": "fe80::3:2", "port": 3, "tap": "tap3", "mac": M3}]


@pytest.mark.parametrize("host_first", [True, False])
def test_a_hosts_link_local_and_global_addresses_are_named_by_the_hop_set(host_first):
    """One host, one MAC, two neighbours (fe80:: and 2001:db8:1::2): the route via its link-local
    address and its own host entry each name the address they use, whatever the neighbours' order."""
    kernel = Kernel()
    pairs = [(HOST1_6, MAC1), (GW1_6, MAC1)]
    for address, mac in (pairs if host_first else pairs[::-1]):
        kernel.neigh(P1, address, mac)
    kernel.route("2001:db8:70::/48", via(GW1_6, P1))
    switch = programmed(kernel)
    assert entry(switch, kernel, "2001:db8:70::9")["next_hops"] == [
        {"via": GW1_6, "port": 1, "tap": "tap1", "mac": M1}]
    host = entry(switch, kernel, HOST1_6)
    assert host["prefix"] == f"{HOST1_6}/128"
    assert host["next_hops"] == [{"via": HOST1_6, "port": 1, "tap": "tap1", "mac": M1}]


def test_without_hop_sets_a_bucket_is_named_by_a_neighbour_of_its_family():
    kernel = gateways()
    kernel.route("10.50.0.0/16", via(GW1, P1))
    switch = programmed(kernel)
    fib = switch.fib
    found = lookup.switch_entry(fib.targets, fib.switch_groups, ip("10.50.0.1"), TAP_OF_PORT, kernel.state())
    assert found["next_hops"] == [{"via": GW1, "port": 1, "tap": "tap1", "mac": M1}]


def test_what_the_switch_sends_to_the_kernel():
    kernel = gateways()
    kernel.neigh(P2, "10.0.2.7", None, NUD_FAILED)
    kernel.route("10.70.0.0/16", via("10.0.2.7", P2))  # its next hop unresolved
    switch = programmed(kernel)
    unresolved = entry(switch, kernel, "10.70.1.1")
    assert unresolved == {"prefix": "10.70.0.0/16", "table": int(Table.FIB4), "priority": FIB_PRIORITY_BASE + 16,
                          "target": "kernel", "group": None, "group_type": None, "next_hops": []}
    subnet = entry(switch, kernel, "10.0.3.99")  # no neighbour: the connected subnet's flow
    assert subnet["prefix"] == "10.0.3.0/24" and subnet["target"] == "kernel"
    miss = entry(switch, kernel, "192.0.2.1")
    assert miss == {"prefix": None, "table": int(Table.FIB4), "priority": 0, "target": "kernel", "group": None,
                    "group_type": None, "next_hops": []}
    assert entry(switch, kernel, "2001:db8:99::1")["table"] == int(Table.FIB6)


# --- kernel_entry, from iproute2's JSON --------------------------------------------------------------

# `ip -json -details -4 route show table main match ADDRESS`, as iproute2 6.1 printed them, with the
# fibharness TAPs' names.
DEFAULT = {"type": "unicast", "dst": "default", "gateway": GW2, "dev": "tap2", "protocol": "boot", "scope": "global",
           "flags": []}
ECMP = {"type": "unicast", "dst": "10.9.0.0/16", "protocol": "boot", "scope": "global", "flags": [],
        "nexthops": [{"gateway": GW1, "dev": "tap1", "weight": 1, "flags": []},
                     {"gateway": GW2, "dev": "tap2", "weight": 1, "flags": []}]}
BLACKHOLE = {"type": "blackhole", "dst": "10.8.0.0/16", "protocol": "boot", "scope": "global", "flags": []}
CONNECTED = {"type": "unicast", "dst": "10.0.1.0/24", "dev": "tap1", "protocol": "kernel", "scope": "link",
             "prefsrc": "10.0.1.1", "flags": []}
METRIC_5 = {"type": "unicast", "dst": "10.7.0.0/16", "gateway": GW1, "dev": "tap1", "protocol": "boot",
            "scope": "global", "metric": 5, "flags": []}
METRIC_10 = {**METRIC_5, "gateway": GW2, "dev": "tap2", "metric": 10}
OFF_SWITCH = {"type": "unicast", "dst": "10.6.0.0/16", "gateway": "192.168.0.1", "dev": "eth0", "protocol": "static",
              "scope": "global", "flags": []}
V6_VIA = {"type": "unicast", "dst": "2001:db8:99::/48", "gateway": GW1_6, "dev": "tap1", "protocol": "bird",
          "scope": "global", "metric": 32, "flags": [], "pref": "medium"}
V6_CONNECTED = {"type": "unicast", "dst": "2001:db8:1::/64", "dev": "tap1", "protocol": "kernel", "scope": "global",
                "metric": 256, "flags": [], "pref": "medium"}


def kentry(routes: list[dict], address: str, kernel: Kernel | None = None) -> dict:
    return lookup.kernel_entry(routes, ip(address), PORT_OF_TAP, (kernel or gateways()).state())


def test_the_kernel_picks_the_longest_prefix_then_the_lowest_metric():
    found = kentry([DEFAULT, ECMP], "10.9.1.1")
    assert found["prefix"] == "10.9.0.0/16" and found["type"] == "unicast" and found["protocol"] == "boot"
    assert found["next_hops"] == [{"via": GW1, "port": 1, "tap": "tap1", "mac": M1},
                                  {"via": GW2, "port": 2, "tap": "tap2", "mac": M2}]
    found = kentry([DEFAULT, METRIC_10, METRIC_5], "10.7.1.1")
    assert found["prefix"] == "10.7.0.0/16"
    assert found["next_hops"] == [{"via": GW1, "port": 1, "tap": "tap1", "mac": M1}]
    assert kentry([DEFAULT], "192.0.2.1")["prefix"] == "0.0.0.0/0"


def test_connected_blackhole_off_switch_and_no_route():
    kernel = gateways().neigh(P1, "10.0.1.5", MAC3)
    assert kentry([DEFAULT, CONNECTED], "10.0.1.5", kernel)["next_hops"] == [
        {"via": None, "port": 1, "tap": "tap1", "mac": M3}]
    assert kentry([DEFAULT, CONNECTED], "10.0.1.6", kernel)["next_hops"] == [
        {"via": None, "port": 1, "tap": "tap1", "mac": None}]  # not resolved
    hole = kentry([DEFAULT, BLACKHOLE], "10.8.1.1")
    assert hole == {"prefix": "10.8.0.0/16", "type": "blackhole", "protocol": "boot", "next_hops": []}
    off = kentry([OFF_SWITCH], "10.6.0.1")
    assert off["next_hops"] == [{"via": "192.168.0.1", "port": None, "tap": "eth0", "mac": None}]
    assert kentry([], "192.0.2.1") == {"prefix": None, "type": None, "protocol": None, "next_hops": []}


def test_ipv6_via_a_link_local_gateway_and_connected():
    found = kentry([V6_VIA], "2001:db8:99::1")
    assert found == {"prefix": "2001:db8:99::/48", "type": "unicast", "protocol": "bird",
                     "next_hops": [{"via": GW1_6, "port": 1, "tap": "tap1", "mac": M1}]}
    kernel = Kernel().neigh(P1, HOST1_6, MAC1)
    assert kentry([V6_CONNECTED], HOST1_6, kernel)["next_hops"] == [{"via": None, "port": 1, "tap": "tap1", "mac": M1}]
    assert kentry([{**V6_VIA, "dst": "default"}], "2001:db8:5::1")["prefix"] == "::/0"


def test_linkdown_next_hops_are_passed_over_as_the_kernel_does():
    down = {**ECMP, "nexthops": [{**ECMP["nexthops"][0], "flags": ["linkdown"]}, ECMP["nexthops"][1]]}
    assert [h["port"] for h in kentry([DEFAULT, down], "10.9.1.1")["next_hops"]] == [2]
    all_down = {**METRIC_5, "flags": ["linkdown"]}
    assert kentry([DEFAULT, all_down], "10.7.1.1")["prefix"] == "0.0.0.0/0"
    assert kentry([{**BLACKHOLE, "flags": ["linkdown"]}], "10.8.1.1")["type"] == "blackhole"


# --- agree -------------------------------------------------------------------------------------------


def test_agree_on_the_same_next_hops_in_any_order():
    kernel = gateways()
    kernel.route("10.9.0.0/16", via(GW1, P1), via(GW2, P2))
    switch = programmed(kernel)
    assert lookup.agree(entry(switch, kernel, "10.9.1.1"), kentry([DEFAULT, ECMP], "10.9.1.1", kernel))
    # The kernel's connected /24 and the switch's host /32 differ; the next hop is the same.
    assert lookup.agree(entry(switch, kernel, GW1), kentry([CONNECTED], GW1, kernel))


def test_disagree_when_the_switch_forwards_elsewhere_or_should_forward():
    kernel = gateways()
    kernel.route("10.9.0.0/16", via(GW1, P1))  # the switch has one hop, the kernel two
    switch = programmed(kernel)
    assert not lookup.agree(entry(switch, kernel, "10.9.1.1"), kentry([ECMP], "10.9.1.1", kernel))
    assert not lookup.agree(entry(switch, kernel, "10.9.1.1"), kentry([BLACKHOLE | {"dst": "10.9.0.0/16"}],
                                                                      "10.9.1.1", kernel))
    # A table miss while the kernel has a resolved route on a switch port: the switch lags.
    miss = entry(switch, kernel, "10.7.1.1")
    assert miss["target"] == "kernel" and not lookup.agree(miss, kentry([METRIC_5], "10.7.1.1", kernel))


@pytest.mark.parametrize("routes, address", [
    ([], "192.0.2.1"),  # no route anywhere
    ([BLACKHOLE], "10.8.1.1"),  # not unicast: the kernel drops it
    ([OFF_SWITCH], "10.6.0.1"),  # out of a port that is no switch port
    ([CONNECTED], "10.0.1.77"),  # a neighbour not resolved yet
])
def test_the_switch_sending_to_the_kernel_agrees_when_the_kernel_must_decide(routes, address):
    kernel = gateways()
    switch = programmed(kernel)
    found = entry(switch, kernel, address)
    assert found["target"] == "kernel"
    assert lookup.agree(found, kentry(routes, address, kernel))


# --- the kernel's side from the mirror ----------------------------------------------------------------


def hop(ifindex, gateway: str | None, linkdown: bool = False):
    from taprouter.routing.model import NextHop
    return NextHop(ifindex=ifindex.ifindex, gateway=ip(gateway) if gateway else None, linkdown=linkdown)


def test_mirror_pick_is_the_longest_prefix_then_the_lowest_usable_metric():
    a, b = (hop(P1, GW1),), (hop(P2, GW2),)
    routes = table(("0.0.0.0/0", (0, b)), ("10.7.0.0/16", (5, a, 10, b)), ("10.8.0.0/16", (0, None)),
                   ("10.9.0.0/16", (5, (hop(P1, GW1, linkdown=True),), 10, b)),
                   ("10.10.0.0/16", (0, (hop(P1, GW1, linkdown=True),))),
                   ("2001:db8::/32", (1024, (hop(P1, GW1_6),))))
    pk, metric, hops = lookup.mirror_pick(routes, ip("10.7.1.1"))
    assert pfx.to_network(pk) == ipaddress.ip_network("10.7.0.0/16") and metric == 5 and hops == a
    assert lookup.mirror_pick(routes, ip("10.8.1.1"))[2] is None  # the kernel judges a blackhole
    assert lookup.mirror_pick(routes, ip("10.9.1.1"))[1:] == (10, b)  # metric 5's hop is linkdown
    assert pfx.length(lookup.mirror_pick(routes, ip("10.10.1.1"))[0]) == 0  # every hop down: passed over
    assert pfx.length(lookup.mirror_pick(routes, ip("2001:db8:5::1"))[0]) == 32
    assert lookup.mirror_pick(routes, ip("2001:db9::1")) is None


def test_mirror_entry_names_taps_ports_and_resolved_macs():
    kernel = gateways()
    state = kernel.state()
    pk = pfx.from_network(ipaddress.ip_network("10.9.0.0/16"))
    found = lookup.mirror_entry((pk, 0, (hop(P1, GW1), hop(P2, GW2))), ip("10.9.1.1"), ("unicast", "bird"),
                                PORT_OF_TAP, state)
    assert found == {"prefix": "10.9.0.0/16", "type": "unicast", "protocol": "bird",
                     "next_hops": [{"via": GW1, "port": 1, "tap": "tap1", "mac": M1},
                                   {"via": GW2, "port": 2, "tap": "tap2", "mac": M2}]}
    connected = lookup.mirror_entry((pfx.from_network(ipaddress.ip_network("10.0.1.0/24")), 0, (hop(P1, None),)),
                                    ip("10.0.1.77"), ("unicast", "kernel"), PORT_OF_TAP, state)
    assert connected["next_hops"] == [{"via": None, "port": 1, "tap": "tap1", "mac": None}]


def test_parse_fib_match_reads_prefix_table_type_and_protocol():
    import struct
    attrs = struct.pack("=HH", 8, 1) + bytes([10, 66, 0, 0]) + struct.pack("=HHI", 8, 15, 254)
    body = struct.pack("=BBBBBBBBI", 2, 16, 0, 0, 254, 4, 0, 1, 0) + attrs
    msg = struct.pack("=IHHII", 16 + len(body), 24, 0, 1, 0) + body
    pk, tbl, kind, protocol = netlink.parse_fib_match(msg)
    assert pfx.to_network(pk) == ipaddress.ip_network("10.66.0.0/16") and tbl == 254
    assert (kind, protocol) == ("unicast", "static")
    assert netlink.parse_fib_match(struct.pack("=IHHIIi", 36, 2, 0, 1, 0, -22) + bytes(16)) is None
