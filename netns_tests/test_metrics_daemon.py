"""/metrics of a real daemon, read with prometheus_client's own parser and held to what the switch
and the kernel say: FIB entries against the route flows on the switch, kernel routes against the
router netns' table, PacketIns after pings, the switch's connection dropped and back, a drop
policy's packets against its flows' n_packets, and the punt meters' drops.
"""

from __future__ import annotations

import ipaddress
import json
import re
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from routerlab import PYTHON, run
from taprouter.controller.openflow.pipeline import (Owner, Table, meter_name, owner_of, policy_cookie,
                                                  port_meters)

COUNT_POLL = 2.0  # seconds between the daemon's polls of policy and meter counters (router.py)
METERS = {"slow_path", "punt", "resolve_port1", "local_port1", "resolve_port2", "local_port2"}
LOCAL_1 = port_meters(1)[1]  # what h1 sends to the router's addresses
# test_route_counts_...: on groups, the 6 static routes and a host entry per host and family; to
# the kernel, the 6 connected subnets (for hosts not resolved yet) and the blackhole.
SWITCHED, TO_KERNEL = 6 + 6, 6 + 1


def scrape(lab) -> dict:
    """name -> its family, as prometheus_client parses the text."""
    with urllib.request.urlopen(f"http://127.0.0.1:{lab.metrics_port}/metrics", timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def value(families: dict, family: str, sample: str | None = None, **labels: str) -> float | None:
    """The one sample of `family` (named `sample`, by default the family's own name) whose labels
    include `labels`; None when there is none."""
    found = [s.value for s in families[family].samples
             if s.name == (sample or family) and labels.items() <= s.labels.items()]
    assert len(found) <= 1, f"{family}{labels}: {len(found)} samples"
    return found[0] if found else None


def total(families: dict, family: str, **labels: str) -> float:
    """The sum of a counter's `_total` samples whose labels include `labels`."""
    return sum(s.value for s in families[family].samples
               if s.name == family + "_total" and labels.items() <= s.labels.items())


def route_flows(lab) -> list:
    """The FIB tables' route flows (the table-miss flows to the kernel are the pipeline's)."""
    return [f for table in (Table.FIB4, Table.FIB6) for f in lab.flows(int(table))
            if owner_of(f.cookie) == Owner.ROUTE]


def kernel_routes(lab) -> int:
    """The router netns' main table, both families, as `ip -json` lists it, without the link-local
    and multicast destinations no FIB carries (routing/rtnl.py's NEVER_IN_FIB)."""
    count = 0
    for family, default in (("-4", "0.0.0.0/0"), ("-6", "::/0")):
        for route in json.loads(lab.in_router("ip", "-json", family, "route", "show", "table", "main").stdout or "[]"):
            dst = ipaddress.ip_network(default if route["dst"] == "default" else route["dst"])
            count += not (dst.is_link_local or dst.is_multicast)
    return count


def test_names_follow_prometheus_conventions(router_lab):
    families = scrape(router_lab)
    counters = {name for name, f in families.items() if f.type == "counter"}
    assert {"taprouter_packet_ins", "taprouter_packet_outs", "taprouter_punt_dropped_packets",
            "taprouter_relay_errors", "taprouter_switch_reconnects", "taprouter_policy_packets",
            "taprouter_policy_bytes"} <= counters
    for name in counters:
        assert not name.endswith("_total"), name
        assert {s.name for s in families[name].samples} <= {name + "_total", name + "_created"}, name
    gauges = {name for name, f in families.items() if f.type == "gauge"}
    assert {"taprouter_kernel_routes", "taprouter_fib_entries", "taprouter_switch_connected",
            "taprouter_unresolved_next_hops", "taprouter_reconcile_backlog_routes"} <= gauges
    assert families["taprouter_reconcile_pass_duration_seconds"].type == "histogram"
    for family in families.values():
        assert family.name.startswith("taprouter_"), family.name
        for s in family.samples:
            assert s.labels.get("router") == router_lab.router, s


def test_route_counts_match_the_switch_and_the_kernel(router_lab):
    lab = router_lab
    for n in (1, 2, 3):  # every host's neighbour resolved: host entries on groups
        lab.assert_ping(lab.host(n), f"10.0.{n}.1", count=2)
        lab.assert_ping(lab.host(n), f"2001:db8:{n}::1", count=2)
    for i in range(5):
        lab.in_router("ip", "route", "add", f"10.77.{i}.0/24", "via", "10.0.2.2")
    lab.in_router("ip", "route", "add", "blackhole", "10.78.0.0/16")
    lab.in_router("ip", "-6", "route", "add", "2001:db8:77::/48", "via", "2001:db8:3::2")

    def counted():
        families = scrape(lab)
        fib = (value(families, "taprouter_fib_entries", target="switched"),
               value(families, "taprouter_fib_entries", target="kernel"))
        return (fib, value(families, "taprouter_kernel_routes"), len(route_flows(lab)), kernel_routes(lab))

    def agree():
        (switched, to_kernel), kernel, flows, in_netns = seen = counted()
        return switched + to_kernel == flows and kernel == in_netns and switched == SWITCHED and seen

    (switched, to_kernel), *_ = lab.wait_until(
        agree, timeout=15, message=lambda: f"(switched, kernel), kernel routes, route flows, netns routes: "
                                           f"{counted()}\n{lab.dump_flows(3)}{lab.dump_flows(4)}")
    assert to_kernel == TO_KERNEL
    assert sum(1 for f in route_flows(lab) if f.group is not None) == switched


def test_packet_ins_grow_after_pings_to_the_router(router_lab):
    lab = router_lab
    before = total(scrape(lab), "taprouter_packet_ins", port="1")
    lab.assert_ping(lab.host(1), "10.0.1.1", count=5)
    after = lab.wait_until(lambda: (n := total(scrape(lab), "taprouter_packet_ins", port="1")) >= before + 5 and n,
                           timeout=5, message="5 more PacketIns on port 1")
    # Each echo request to the router is punted; replies go out as PacketOuts.
    assert after - before >= 5
    assert total(scrape(lab), "taprouter_packet_outs", port="1") >= 5


def test_switch_connected_and_reconnects(router_lab):
    lab = router_lab
    families = scrape(lab)
    assert value(families, "taprouter_switch_connected") == 1
    assert value(families, "taprouter_switch_reconnects", "taprouter_switch_reconnects_total") == 0
    # Point the switch at a port nobody listens on: it drops the connection (and keeps its flows,
    # fail mode secure: a controller stays configured), then back.
    target = run("ovs-vsctl", "get", "controller", lab.bridge, "target").stdout.strip()
    run("ovs-vsctl", "set", "controller", lab.bridge, 'target="tcp:127.0.0.1:9"')
    try:
        lab.wait_until(lambda: value(scrape(lab), "taprouter_switch_connected") == 0, timeout=10,
                       message="taprouter_switch_connected 0")
        # A switch away for seconds keeps forwarding on its flows: the TAPs keep carrier (for 30 s).
        assert all("LOWER_UP" in lab.tap_link(n)["flags"] for n in (1, 2, 3))
    finally:
        run("ovs-vsctl", "set", "controller", lab.bridge, f"target={target}")
    lab.wait_until(lambda: value(scrape(lab), "taprouter_switch_connected") == 1, timeout=15,
                   message="taprouter_switch_connected 1 again")
    families = scrape(lab)
    assert value(families, "taprouter_switch_reconnects", "taprouter_switch_reconnects_total") == 1


def test_a_drop_policys_packets_are_its_flows_packets(router_lab):
    lab = router_lab
    h1 = lab.host(1)
    lab.assert_ping(h1, "10.0.3.2", count=2)  # allowed before the policy
    added = lab.taprouter("policy", "add", "-c", str(lab.config_path), "--router", lab.router, "--name", "no-ping-h3",
                          "--action", "drop", "--src", "10.0.1.0/24", "--dst", "10.0.3.0/24", "--proto", "icmp")
    (entry,) = json.loads(lab.taprouter("policy", "list", "-c", str(lab.config_path), "--json").stdout)
    cookie = policy_cookie(entry["id"])
    assert entry["state"] == "installed", (added.stdout, added.stderr, entry)

    def flow_packets() -> int:
        flows = [f for f in lab.flows(int(Table.POLICY)) if f.cookie == cookie]
        assert flows, f"no flow with cookie {cookie:#x}:\n{lab.dump_flows(int(Table.POLICY))}"
        return sum(f.n_packets for f in flows)

    assert value(scrape(lab), "taprouter_policy_installed", policy="no-ping-h3") == 1
    assert lab.ping(h1, "10.0.3.2", count=6, deadline=None).returncode != 0  # dropped
    on_switch = flow_packets()
    assert on_switch >= 6

    def scraped() -> float:
        return value(scrape(lab), "taprouter_policy_packets", "taprouter_policy_packets_total", policy="no-ping-h3")

    lab.wait_until(lambda: scraped() == on_switch, timeout=3 * COUNT_POLL + 2,
                   message=lambda: f"taprouter_policy_packets_total {scraped()} == {on_switch} on the switch")
    assert value(scrape(lab), "taprouter_policy_bytes", "taprouter_policy_bytes_total",
                 policy="no-ping-h3") == sum(f.n_bytes for f in lab.flows(int(Table.POLICY)) if f.cookie == cookie)
    assert flow_packets() == on_switch  # nothing else hit it meanwhile
    # The ping to h2 is not the policy's.
    lab.assert_ping(h1, "10.0.2.2", count=2)
    assert flow_packets() == on_switch


def meter_drops(lab) -> dict[int, int]:
    """meter id -> packets its bands dropped, as `ovs-ofctl meter-stats` says."""
    out = run("ovs-ofctl", "-O", "OpenFlow13", "meter-stats", lab.bridge).stdout
    found = {}
    for meter in re.finditer(r"meter:(\d+) .*?\n?\s*0: packet_count:(\d+)", out):
        found[int(meter.group(1))] = int(meter.group(2))
    return found


FLOOD_FRAMES = 30000
FLOOD = """
import socket, sys
from scapy.all import Ether, IP, ICMP, get_if_hwaddr
frame = bytes(Ether(src=get_if_hwaddr("eth0"), dst=sys.argv[1]) / IP(src="10.0.1.2", dst="10.0.1.1")
              / ICMP(id=7) / (b"x" * 32))
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
for _ in range(int(sys.argv[2])):
    s.send(frame)
"""


def test_punt_drops_per_meter(router_lab):
    lab = router_lab
    h1 = lab.host(1)
    lab.assert_ping(h1, "10.0.1.1", count=1)

    def meters():
        return {s.labels["meter"]: s.value for s in scrape(lab)["taprouter_punt_dropped_packets"].samples
                if s.name == "taprouter_punt_dropped_packets_total"}

    lab.wait_until(lambda: meters().keys() >= METERS, timeout=3 * COUNT_POLL + 2,
                   message=lambda: f"a series per punt meter: {meters()}")
    # Echo requests to the router, far faster than port 1's local meter lets through.
    (gateway,) = json.loads(h1.run("ip", "-json", "neigh", "show", "10.0.1.1"))
    run(PYTHON, "-c", FLOOD, gateway["lladdr"], str(FLOOD_FRAMES), netns=h1.name, timeout=120)
    on_switch = meter_drops(lab)
    assert on_switch[LOCAL_1] > 0, on_switch
    found = lab.wait_until(lambda: (m := meters())["local_port1"] == meter_drops(lab)[LOCAL_1] and m,
                           timeout=3 * COUNT_POLL + 2,
                           message=lambda: f"scraped {meters()}, on the switch {meter_drops(lab)}")
    assert {meter_name(m): n for m, n in meter_drops(lab).items()} == found
    print(f"port 1's local meter dropped {found['local_port1']:.0f} of {FLOOD_FRAMES} echo requests to the router")
