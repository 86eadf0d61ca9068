"""The punt plan, run on the in-memory table: which frames reach the kernel, and reconciling it."""

from __future__ import annotations

import random
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_interface

import pytest

from oftable import Fate, OFTable
from taprouter.controller.openflow import pipeline
from taprouter.controller.openflow.flows import (ETH_TYPE_ARP, ETH_TYPE_IPV4, ETH_TYPE_IPV6, Flow, IPPROTO_ICMPV6, Match, Output, exact, to_controller)
from taprouter.mac import mac_to_int
from taprouter.controller.planner.baseflows import policy_table_flows
from taprouter.controller.planner.punt import PortView, plan
from taprouter.controller.openflow.ops import FlowOp, Op
from taprouter.controller.planner.diff import diff

P1_MAC = mac_to_int("0e:00:00:00:01:01")
P2_MAC = mac_to_int("0e:00:00:00:02:02")
HOST_MAC = mac_to_int("02:00:00:00:00:10")
OTHER_MAC = mac_to_int("02:00:00:00:00:99")
BROADCAST = mac_to_int("ff:ff:ff:ff:ff:ff")
IPPROTO_OSPF = 89
IPPROTO_UDP = 17

PORTS = (
    PortView(1, P1_MAC, (ip_interface("10.0.1.1/24"), ip_interface("2001:db8:1::1/64"))),
    PortView(2, P2_MAC, (ip_interface("10.0.2.1/24"), ip_interface("2001:db8:2::1/64"))),
)
MAC = {p.number: p.mac for p in PORTS}


def pipeline_flows(ports) -> frozenset:
    """The punt plan with the policy table in front of the punt table, as every frame passes it (no
    policy, no FIB: what is not punted here goes nowhere)."""
    return plan(ports) | frozenset(policy_table_flows(list(ports)))


@pytest.fixture(scope="module")
def table() -> OFTable:
    return OFTable(pipeline_flows(PORTS))


def v4(dst: str) -> int:
    return int(IPv4Address(dst))


def v6(dst: str) -> int:
    return int(IPv6Address(dst))


def arp(in_port: int, tpa: str, eth_dst: int = BROADCAST, op: int = 1) -> dict[str, int]:
    return {"in_port": in_port, "eth_src": HOST_MAC, "eth_dst": eth_dst, "eth_type": ETH_TYPE_ARP,
            "arp_op": op, "arp_tpa": v4(tpa)}


def ipv4(in_port: int, dst: str, eth_dst: int | None = None, proto: int = IPPROTO_UDP) -> dict[str, int]:
    return {"in_port": in_port, "eth_src": HOST_MAC, "eth_dst": MAC.get(in_port, P1_MAC) if eth_dst is None
            else eth_dst, "eth_type": ETH_TYPE_IPV4, "ip_proto": proto, "ipv4_dst": v4(dst), "ttl": 64}


def ipv6(in_port: int, dst: str, eth_dst: int | None = None, proto: int = IPPROTO_UDP,
         icmpv6_type: int | None = None) -> dict[str, int]:
    packet = {"in_port": in_port, "eth_src": HOST_MAC, "eth_dst": MAC.get(in_port, P1_MAC) if eth_dst is None
              else eth_dst, "eth_type": ETH_TYPE_IPV6, "ip_proto": proto, "ipv6_dst": v6(dst), "ttl": 64}
    if icmpv6_type is not None:
        packet["ip_proto"] = IPPROTO_ICMPV6
        packet["icmpv6_type"] = icmpv6_type
    return packet


def multicast_mac_v6(dst: str) -> int:
    return 0x333300000000 | (v6(dst) & 0xFFFFFFFF)


def multicast_mac_v4(dst: str) -> int:
    return 0x01005E000000 | (v4(dst) & 0x7FFFFF)


def punted(fate: Fate, packet: dict[str, int]) -> bool:
    """Went to the controller unchanged, and nowhere else."""
    return fate.to_controller and fate.controller_packets == (packet,) and fate.outputs == ()


# --- what reaches the kernel -----------------------------------------------------------------------

TO_CONTROLLER = {
    "arp-request-own-address": arp(1, "10.0.1.1"),
    "arp-request-own-address-port2": arp(2, "10.0.2.1"),
    "arp-reply-to-router-mac": arp(1, "10.0.1.1", eth_dst=P1_MAC, op=2),
    "ipv4-own-address": ipv4(1, "10.0.1.1"),
    "ipv4-address-of-other-port": ipv4(1, "10.0.2.1"),
    "ipv4-ping-port2": ipv4(2, "10.0.2.1", proto=1),
    "ipv6-own-address": ipv6(1, "2001:db8:1::1"),
    "ipv6-address-of-other-port": ipv6(2, "2001:db8:1::1"),
    "ipv6-echo-own-address": ipv6(1, "2001:db8:1::1", icmpv6_type=128),
    "nd-ns-solicited-node": ipv6(1, "ff02::1:ff00:1", eth_dst=multicast_mac_v6("ff02::1:ff00:1"),
                                 icmpv6_type=135),
    "nd-na-to-router-mac": ipv6(1, "fe80::1", icmpv6_type=136),
    "nd-rs-all-routers": ipv6(2, "ff02::2", eth_dst=multicast_mac_v6("ff02::2"), icmpv6_type=133),
    "nd-ra-all-nodes": ipv6(2, "ff02::1", eth_dst=multicast_mac_v6("ff02::1"), icmpv6_type=134),
    "mld-report": ipv6(1, "ff02::16", eth_dst=multicast_mac_v6("ff02::16"), icmpv6_type=143),
    "mldv1-report-site-scope-group": ipv6(1, "ff05::1:3", eth_dst=multicast_mac_v6("ff05::1:3"),
                                          icmpv6_type=131),
    "mldv1-done": ipv6(2, "ff02::2", eth_dst=multicast_mac_v6("ff02::2"), icmpv6_type=132),
    "ospf-hello-v4": ipv4(1, "224.0.0.5", eth_dst=multicast_mac_v4("224.0.0.5"), proto=IPPROTO_OSPF),
    "ospf-dr-v4": ipv4(2, "224.0.0.6", eth_dst=multicast_mac_v4("224.0.0.6"), proto=IPPROTO_OSPF),
    "ospfv3-ff02-5": ipv6(1, "ff02::5", eth_dst=multicast_mac_v6("ff02::5"), proto=IPPROTO_OSPF),
    "ospf-unicast-link-local-v6": ipv6(1, "fe80::2", proto=IPPROTO_OSPF),
    "subnet-broadcast": ipv4(1, "10.0.1.255", eth_dst=BROADCAST),
    "subnet-broadcast-port2": ipv4(2, "10.0.2.255", eth_dst=BROADCAST),
    "limited-broadcast": ipv4(1, "255.255.255.255", eth_dst=BROADCAST),
    "limited-broadcast-port2": ipv4(2, "255.255.255.255", eth_dst=BROADCAST),
}


@pytest.mark.parametrize("packet", TO_CONTROLLER.values(), ids=TO_CONTROLLER.keys())
def test_goes_to_controller(table, packet):
    assert punted(table.process(packet), packet)


DROPPED = {
    "arp-for-other-host": arp(1, "10.0.1.99"),
    "arp-for-gateway-elsewhere": arp(1, "192.0.2.1"),
    "arp-on-unknown-port": arp(9, "10.0.1.1"),
    "ipv4-on-unknown-port": ipv4(9, "10.0.1.1", eth_dst=P1_MAC),
    "ipv6-on-unknown-port": ipv6(3, "2001:db8:1::1", eth_dst=P1_MAC),
    "unicast-to-other-mac": ipv4(1, "10.0.1.1", eth_dst=OTHER_MAC),
    "arp-unicast-to-other-mac": arp(1, "10.0.1.1", eth_dst=OTHER_MAC, op=2),
    "to-port2-mac-on-port1": ipv4(1, "10.0.1.1", eth_dst=P2_MAC),
    "transit-ipv4": ipv4(1, "192.0.2.7"),
    "transit-ipv4-on-link-host": ipv4(1, "10.0.1.99"),
    "transit-ipv4-other-subnet": ipv4(2, "10.0.1.50"),
    "transit-ipv4-network-address": ipv4(1, "10.0.1.0"),
    "transit-ipv6": ipv6(1, "2001:db8:2::99"),
    "transit-ipv6-echo": ipv6(1, "2001:db8:ffff::1", icmpv6_type=128),
    "ipv4-multicast-not-link-local": ipv4(1, "239.1.1.1", eth_dst=multicast_mac_v4("239.1.1.1")),
    "ipv6-multicast-site-scope": ipv6(1, "ff05::2", eth_dst=multicast_mac_v6("ff05::2")),
    "broadcast-of-unconfigured-subnet": ipv4(1, "10.0.3.255", eth_dst=BROADCAST),
    "lldp": {"in_port": 1, "eth_src": HOST_MAC, "eth_dst": mac_to_int("01:80:c2:00:00:0e"),
             "eth_type": 0x88CC},
    "no-ethertype": {"in_port": 1, "eth_src": HOST_MAC, "eth_dst": P1_MAC},
}


@pytest.mark.parametrize("packet", DROPPED.values(), ids=DROPPED.keys())
def test_dropped(table, packet):
    assert table.process(packet).dropped


def test_punt_plan_only_ever_sends_to_the_controller():
    for flow in plan(PORTS):
        assert set(flow.actions) <= {to_controller()}, flow


def test_random_packets_never_forwarded_and_punted_only_when_addressed_to_router(table):
    rng = random.Random(1)
    macs = [P1_MAC, P2_MAC, HOST_MAC, OTHER_MAC, BROADCAST, multicast_mac_v4("224.0.0.5"),
            multicast_mac_v6("ff02::1:ff00:1")]
    v4s = ["10.0.1.1", "10.0.2.1", "10.0.1.2", "10.0.1.255", "255.255.255.255", "224.0.0.5", "8.8.8.8"]
    v6s = ["2001:db8:1::1", "2001:db8:2::1", "2001:db8:1::2", "ff02::5", "fe80::9", "ff0e::1"]
    punts = 0
    for _ in range(3000):
        in_port = rng.choice([1, 2, 3])
        eth_dst = rng.choice(macs)
        kind = rng.choice(["arp", "v4", "v6", "icmp6"])
        if kind == "arp":
            packet = arp(in_port, rng.choice(v4s), eth_dst=eth_dst)
        elif kind == "v4":
            packet = ipv4(in_port, rng.choice(v4s), eth_dst=eth_dst, proto=rng.choice([1, 6, 17, 89]))
        else:
            packet = ipv6(in_port, rng.choice(v6s), eth_dst=eth_dst,
                          icmpv6_type=rng.choice([128, 129, 133, 135, 1]) if kind == "icmp6" else None)
        fate = table.process(packet)
        assert fate.outputs == ()
        if fate.to_controller:
            punts += 1
            assert in_port in MAC, packet
            assert eth_dst == MAC[in_port] or eth_dst & 0x010000000000, packet
    assert 0 < punts < 3000


def test_every_flow_is_ours_and_fits_the_schema():
    flows = plan(PORTS)
    assert flows
    for flow in flows:
        assert pipeline.is_ours(flow.cookie), flow
        assert pipeline.check(flow) is flow


def test_no_ports_no_flows():
    assert plan([]) == frozenset()
    assert OFTable(pipeline_flows([])).process(arp(1, "10.0.1.1")).dropped


def test_port_without_addresses_still_accepts_control_traffic():
    table = OFTable(pipeline_flows([PortView(5, P1_MAC, ())]))
    ns = ipv6(5, "ff02::1:ff00:1", eth_dst=multicast_mac_v6("ff02::1:ff00:1"), icmpv6_type=135)
    assert punted(table.process(ns), ns)
    assert table.process(arp(5, "10.0.1.1")).dropped


def test_point_to_point_has_no_subnet_broadcast():
    table = OFTable(pipeline_flows([PortView(1, P1_MAC, (ip_interface("10.9.0.0/31"),))]))
    assert punted(table.process(ipv4(1, "10.9.0.0")), ipv4(1, "10.9.0.0"))
    assert table.process(ipv4(1, "10.9.0.1")).dropped


def test_plan_is_order_independent():
    assert plan(PORTS) == plan(reversed(PORTS))


def test_removing_an_address_stops_punting_it():
    fewer = (PORTS[0], PortView(2, P2_MAC, (ip_interface("2001:db8:2::1/64"),)))
    table = OFTable(pipeline_flows(fewer))
    assert table.process(ipv4(2, "10.0.2.1")).dropped
    assert table.process(arp(2, "10.0.2.1")).dropped
    assert table.process(ipv4(2, "10.0.2.255", eth_dst=BROADCAST)).dropped
    assert table.process(ipv4(2, "10.0.1.1")).to_controller


# --- reconciling -----------------------------------------------------------------------------------

PLAN_B_PORTS = (
    PortView(1, P1_MAC, (ip_interface("10.0.1.1/24"), ip_interface("2001:db8:1::1/64"),
                         ip_interface("10.0.9.1/30"))),
    PortView(3, mac_to_int("0e:00:00:00:03:03"), (ip_interface("10.0.3.1/24"),)),
)


def test_diff_of_plan_with_itself_is_empty():
    assert diff(plan(PORTS), plan(PORTS)) == []
    assert diff(frozenset(), frozenset()) == []


def test_plan_a_then_plan_b_gives_exactly_plan_b():
    plan_a, plan_b = pipeline_flows(PORTS), pipeline_flows(PLAN_B_PORTS)
    assert plan_a != plan_b
    table = OFTable()
    table.apply(diff(plan_a, frozenset()))
    assert table.snapshot() == plan_a
    ops = diff(plan_b, plan_a)
    assert {op.op for op in ops} == {Op.ADD, Op.DELETE}
    table.apply(ops)
    assert table.snapshot() == plan_b
    assert table.process(arp(3, "10.0.3.1")).to_controller
    assert table.process(arp(2, "10.0.2.1")).dropped


def test_apply_then_revert_leaves_the_table_identical():
    plan_a, plan_b = plan(PORTS), plan(PLAN_B_PORTS)
    table = OFTable(plan_a)
    before = table.snapshot()
    table.apply(diff(plan_b, plan_a))
    table.apply(diff(plan_a, plan_b))
    assert table.snapshot() == before


def test_applying_the_same_operations_twice_changes_nothing():
    plan_a, plan_b = plan(PORTS), plan(PLAN_B_PORTS)
    table = OFTable(plan_a)
    ops = diff(plan_b, plan_a)
    table.apply(ops)
    table.apply(ops)
    assert table.snapshot() == plan_b


def test_adds_come_before_deletes():
    ops = diff(plan(PLAN_B_PORTS), plan(PORTS))
    kinds = [op.op for op in ops]
    assert kinds == sorted(kinds, key=[Op.ADD, Op.MODIFY, Op.DELETE].index)


OURS = pipeline.cookie(pipeline.Owner.PORT)


def _foreign(rng: random.Random, i: int) -> Flow:
    """Someone else's flow: a cookie without taprouter's magic, a key the plan never uses."""
    cookie = rng.choice([0, 0x1234, 0x7A71 << 48, rng.getrandbits(48)])
    return Flow(table=rng.choice([0, 1, 5]), priority=1000 + i,
                match=Match.of(exact("in_port", rng.randrange(1, 50))),
                actions=(Output(rng.randrange(1, 50)),), cookie=cookie)


def _stale(rng: random.Random, i: int) -> Flow:
    """One of ours the plan no longer wants, such as the flows of a removed port or address."""
    if rng.random() < 0.5:
        return Flow(table=0, priority=100, match=Match.of(exact("in_port", 40 + i), exact("eth_dst", P1_MAC)),
                    goto=1, cookie=OURS)
    return Flow(table=1, priority=200, match=Match.of(exact("eth_type", ETH_TYPE_IPV4),
                                                       exact("ipv4_dst", v4("10.77.0.0") + i)),
                actions=(to_controller(),), cookie=OURS)


def _altered(rng: random.Random, flow: Flow) -> Flow:
    """Same key as a desired flow, other instructions: what a previous version may have left."""
    choice = rng.randrange(3)
    if choice == 0:
        return Flow(flow.table, flow.priority, flow.match, (), None, None, flow.cookie)
    if choice == 1:
        return Flow(flow.table, flow.priority, flow.match, (Output(7),), flow.goto, None, flow.cookie)
    return Flow(flow.table, flow.priority, flow.match, flow.actions, flow.goto, 3, flow.cookie)


@pytest.mark.parametrize("seed", range(40))
def test_reconcile_from_arbitrary_installed_state(seed):
    rng = random.Random(seed)
    ports = PORTS if seed % 2 else PLAN_B_PORTS
    desired = plan(ports)
    installed: dict = {}
    for flow in sorted(desired):
        r = rng.random()
        if r < 0.4:
            installed[flow.key] = flow
        elif r < 0.6:
            installed[flow.key] = _altered(rng, flow)
    foreign = {_foreign(rng, i) for i in range(rng.randrange(0, 6))}
    for flow in foreign:
        installed[flow.key] = flow
    for i in range(rng.randrange(0, 6)):
        stale = _stale(rng, i)
        installed[stale.key] = stale
    assert not {f.key for f in foreign} & {f.key for f in desired}

    table = OFTable(installed.values())
    ops = diff(desired, table.snapshot())
    assert all(op.flow.cookie == OURS for op in ops)
    table.apply(ops)
    assert table.snapshot() == desired | foreign
    assert diff(desired, table.snapshot()) == []


def test_reconcile_uses_modify_for_changed_instructions():
    desired = plan(PORTS)
    flow = next(f for f in sorted(desired) if f.actions)
    broken = Flow(flow.table, flow.priority, flow.match, (), None, None, flow.cookie)
    installed = (desired - {flow}) | {broken}
    ops = diff(desired, installed)
    assert ops == [FlowOp(Op.MODIFY, flow)]
    table = OFTable(installed)
    table.apply(ops)
    assert table.snapshot() == desired


def test_reconcile_converges_when_only_the_cookie_changed():
    desired = plan(PORTS)
    flow = next(f for f in sorted(desired) if f.actions)
    old = Flow(flow.table, flow.priority, flow.match, flow.actions, flow.goto, flow.meter, flow.cookie | 0x5)
    assert pipeline.is_ours(old.cookie)
    table = OFTable((desired - {flow}) | {old})
    table.apply(diff(desired, table.snapshot()))
    assert diff(desired, table.snapshot()) == []


# --- control-plane policing ------------------------------------------------------------------------

IPPROTO_TCP = 6


PEER4, PEER6, STRANGER4 = "10.0.1.2", "2001:db8:1::2", "10.0.1.66"
PEERS = frozenset({ip_address(PEER4), ip_address(PEER6)})


def bgp(in_port: int, dst: str, sport: int, dport: int, src: str | None = None) -> dict[str, int]:
    if ":" not in dst:
        packet = ipv4(in_port, dst, proto=IPPROTO_TCP)
        packet["ipv4_src"] = v4(src or PEER4)
    else:
        packet = ipv6(in_port, dst, proto=IPPROTO_TCP)
        packet["ipv6_src"] = v6(src or PEER6)
    packet.update(tcp_src=sport, tcp_dst=dport)
    return packet


@pytest.fixture(scope="module")
def peers_table() -> OFTable:
    return OFTable(plan(PORTS, PEERS) | frozenset(policy_table_flows(list(PORTS), PEERS)))


@pytest.mark.parametrize("packet", [
    bgp(1, "10.0.1.1", 40000, 179),  # a peer opening a session to us
    bgp(2, "10.0.1.1", 179, 40000),  # the peer's side of a session we opened
    bgp(1, "10.0.1.1", 179, 179),  # both ports 179: one flow, still BGP
    bgp(1, "2001:db8:1::1", 40001, 179),
    bgp(2, "10.0.2.1", 40000, 179),  # a peer's session to another of our addresses
], ids=["bgp-in", "bgp-out", "bgp-both-179", "bgp6", "bgp-other-address"])
def test_bgp_from_a_known_peer_reaches_the_kernel_unmetered(peers_table, packet):
    fate = peers_table.process(packet)
    assert punted(fate, packet)
    assert fate.meters == ()


@pytest.mark.parametrize("packet", [
    bgp(1, "10.0.1.1", 40000, 179, src=STRANGER4),  # a SYN flood from a non-peer
    bgp(1, "10.0.1.1", 179, 40000, src=STRANGER4),
    bgp(1, "2001:db8:1::1", 40001, 179, src="2001:db8:1::66"),
], ids=["syn", "from-179", "v6"])
def test_bgp_from_anyone_else_is_policed_on_its_port(peers_table, packet):
    fate = peers_table.process(packet)
    assert punted(fate, packet)
    assert fate.meters == (pipeline.port_meters(1)[1],)


def test_with_the_peers_unknown_bgp_is_policed(table):
    packet = bgp(1, "10.0.1.1", 40000, 179)
    fate = table.process(packet)
    assert punted(fate, packet) and fate.meters == (pipeline.port_meters(1)[1],)


def test_a_peer_only_admits_to_our_addresses_not_transit():
    flows = [f for f in plan(PORTS, PEERS) if any(m.name == "tcp_dst" for m in f.match.fields)]
    ours = {int(a.ip) for p in PORTS for a in p.addresses}
    assert flows and all(any(m.name in ("ipv4_dst", "ipv6_dst") and m.value in ours for m in f.match.fields)
                         for f in flows)


@pytest.mark.parametrize("packet", [
    ipv4(1, "224.0.0.5", eth_dst=multicast_mac_v4("224.0.0.5"), proto=IPPROTO_OSPF),  # OSPF hello
    ipv4(1, "10.0.1.1", proto=IPPROTO_OSPF),  # OSPF unicast (DD, LSR)
    ipv6(1, "ff02::5", eth_dst=multicast_mac_v6("ff02::5"), proto=IPPROTO_OSPF),  # OSPFv3
], ids=["ospf-hello", "ospf-unicast", "ospf3"])
def test_routing_protocols_reach_the_kernel_unmetered(table, packet):
    fate = table.process(packet)
    assert punted(fate, packet)
    assert fate.meters == ()


def resolve(port: int) -> int:
    return pipeline.port_meters(port)[0]


def local(port: int) -> int:
    return pipeline.port_meters(port)[1]


@pytest.mark.parametrize("packet,meter", [
    (ipv4(1, "10.0.1.1", proto=1), local(1)),  # ping
    (ipv4(2, "10.0.1.1", proto=1), local(2)),  # ping to port 1's address, from port 2: port 2's meter
    (bgp(1, "10.0.1.1", 40000, 22), local(1)),  # ssh: TCP, but not BGP
    (ipv4(1, "10.0.1.255"), local(1)),
    (ipv6(2, "2001:db8:2::1", proto=58, icmpv6_type=128), local(2)),  # ping6: ICMPv6, but not ND
    (arp(1, "10.0.1.1"), resolve(1)),
    (arp(2, "10.0.2.1"), resolve(2)),
    (ipv6(1, "ff02::1:ff00:1", eth_dst=multicast_mac_v6("ff02::1:ff00:1"), icmpv6_type=135), resolve(1)),
], ids=["ping", "ping-other-port", "ssh", "broadcast", "ping6", "arp", "arp-port2", "nd"])
def test_other_punted_traffic_is_policed_per_port(table, packet, meter):
    fate = table.process(packet)
    assert punted(fate, packet)
    assert fate.meters == (() if meter is None else (meter,))


def test_each_port_has_meters_of_its_own():
    ids = [pipeline.port_meters(p.number) for p in PORTS]
    assert len({m for pair in ids for m in pair}) == 2 * len(PORTS)
    meters = pipeline.meters_for(p.number for p in PORTS)
    assert all(pipeline.owns_meter(m) and pipeline.is_punt_meter(m) for m in meters)
    assert {pipeline.meter_name(m) for m in meters} == {"slow_path", "punt", "resolve_port1", "local_port1",
                                                        "resolve_port2", "local_port2"}


def test_a_port_out_of_the_meter_range_shares_the_punt_meter():
    far = PortView(200_000, P2_MAC, (ip_interface("10.0.9.1/24"),))
    assert pipeline.port_meters(far.number) is None
    table = OFTable(pipeline_flows(PORTS + (far,)))
    packet = ipv4(200_000, "10.0.9.1", eth_dst=P2_MAC, proto=1)
    fate = table.process(packet)
    assert punted(fate, packet) and fate.meters == (pipeline.PUNT_METER,)


def test_metered_classes_of_one_port_leave_room_for_protocols():
    # The relay carries roughly 5-15K frames/s to the kernel on the 2-core machine (benchmarks/dataplane.py);
    # one port's policed classes, flooded, stay well below that, so protocol traffic is never crowded out.
    assert pipeline.PORT_RESOLVE_RATE + pipeline.PORT_LOCAL_RATE <= 2000
    assert sum(spec.rate for spec in pipeline.METERS.values()) <= 5000
