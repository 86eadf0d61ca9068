"""VLANs on the in-memory OpenFlow table: every tag transition, both families, ECMP across a VLAN and
an untagged port, what ingress accepts and drops (and with which cookie), and the read-back round trip."""

from __future__ import annotations

import ipaddress

import pytest
from os_ken.ofproto import ofproto_v1_3_parser as parser

from fakeswitch import group_desc
from fibharness import Kernel, Port, Switch, via
from taprouter.controller import lookup
from taprouter.controller.openflow import decode, pipeline, wire
from taprouter.controller.openflow.flows import (ETH_TYPE_ARP, ETH_TYPE_IPV4, ETH_TYPE_IPV6, ETH_TYPE_QINQ,
                                                 ETH_TYPE_VLAN, OFPVID_PRESENT, PopVlan, PushVlan, SetField)
from taprouter.controller.openflow.ops import FlowOp, Op
from taprouter.controller.openflow.pipeline import Owner, Table
from taprouter.controller.planner.vlans import drop_counts
from taprouter.mac import mac_to_int
from test_decode import as_flow_stats

MAC_P1, MAC_P2, MAC_P3 = (mac_to_int(f"0e:00:00:00:00:0{i}") for i in (1, 2, 3))
HOST_MAC = mac_to_int("02:00:00:00:99:99")

# One router with VLANs: port 1 a trunk with an untagged TAP too, port 2 a VLAN and untagged, port 3
# a VLAN only. Every TAP of a port has the port's MAC.
U1 = Port(11, 1, MAC_P1, ("10.0.1.1/24", "2001:db8:1::1/64"), vid=0)
V100 = Port(21, 1, MAC_P1, ("10.100.0.1/24", "2001:db8:100::1/64"), vid=100)
V200 = Port(22, 1, MAC_P1, ("10.200.0.1/24", "2001:db8:200::1/64"), vid=200)
U2 = Port(12, 2, MAC_P2, ("10.0.2.1/24", "2001:db8:2::1/64"), vid=0)
V300 = Port(23, 2, MAC_P2, ("10.30.0.1/24", "2001:db8:30::1/64"), vid=300)
V400 = Port(24, 3, MAC_P3, ("10.40.0.1/24", "2001:db8:40::1/64"), vid=400)
TAPS = (U1, V100, V200, U2, V300, V400)
PORT_MAC = {1: MAC_P1, 2: MAC_P2, 3: MAC_P3}


def host(tap: Port, family: int) -> str:
    """The host .2 (or ::2) in a TAP's first subnet of the family."""
    net = [ipaddress.ip_interface(a).network for a in tap.addresses if ipaddress.ip_interface(a).version == family][0]
    return str(net.network_address + 2)


def host_mac(tap: Port) -> int:
    return mac_to_int(f"02:00:00:{tap.number:02x}:{(tap.vid or 0) >> 8:02x}:{(tap.vid or 0) & 0xFF:02x}")


def kernel() -> Kernel:
    k = Kernel(TAPS)
    for tap in TAPS:
        for family in (4, 6):
            k.neigh(tap, host(tap, family), host_mac(tap))
    k.route("198.51.100.0/24", _via(V100, "10.100.0.2"))
    # ECMP: one next hop on a VLAN, one untagged on another port.
    k.route("203.0.113.0/24", _via(V200, "10.200.0.2"), _via(U2, "10.0.2.2"))
    k.route("2001:db8:ecc::/48", _via(V200, "2001:db8:200::2"), _via(U2, "2001:db8:2::2"), metric=1024)
    return k


def _via(tap: Port, gateway: str):
    return via(gateway, tap)


@pytest.fixture(scope="module")
def switch() -> Switch:
    sw = Switch()
    sw.sync(kernel())  # also checks that a restart now (read back, planned afresh) changes nothing
    return sw


def frame(dst: str, in_port: int, vid: int | None = None, eth_dst: int | None = None, sport: int = 1000,
          pcp: int = 5) -> dict[str, int]:
    ip = ipaddress.ip_address(dst)
    pkt = {"in_port": in_port, "eth_src": HOST_MAC, "eth_dst": PORT_MAC[in_port] if eth_dst is None else eth_dst,
           "ip_proto": 17, "udp_src": sport, "udp_dst": 53, "ttl": 64}
    if vid is not None:
        pkt.update(vlan_vid=OFPVID_PRESENT | vid, vlan_pcp=pcp)
    if ip.version == 4:
        pkt.update(eth_type=ETH_TYPE_IPV4, ipv4_src=int(ipaddress.ip_address("10.9.9.9")), ipv4_dst=int(ip))
    else:
        pkt.update(eth_type=ETH_TYPE_IPV6, ipv6_src=int(ipaddress.ip_address("2001:db8:999::9")), ipv6_dst=int(ip))
    return pkt


def forwarded(sw: Switch, pkt: dict) -> tuple[int, int | None, int]:
    """(egress port, egress VLAN or None, next-hop MAC) of a routed packet, checking the rest: one copy,
    eth_src the port's MAC, TTL one less, a fresh tag with PCP 0 (or none), nothing else changed."""
    fate = sw.table.process(pkt)
    assert not fate.to_controller and len(fate.outputs) == 1, fate
    out = fate.outputs[0]
    got = dict(out.packet)
    vid = got.pop("vlan_vid", None)
    pcp = got.pop("vlan_pcp", None)
    assert (pcp == 0) if vid is not None else pcp is None, out
    expected = {k: v for k, v in pkt.items() if k not in ("vlan_vid", "vlan_pcp")}
    expected.update(eth_src=PORT_MAC[out.port], eth_dst=got["eth_dst"], ttl=pkt["ttl"] - 1)
    assert dict(got, in_port=None) == dict(expected, in_port=None), out
    return out.port, None if vid is None else vid & ~OFPVID_PRESENT, got["eth_dst"]


@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.parametrize("src_port,src_vid,dst", [
    (1, None, V300),   # untagged -> VLAN (push), onto another port
    (1, None, V200),   # untagged -> VLAN on the same port (push, out of the ingress port)
    (1, 100, V200),    # VLAN -> VLAN on the same port: router on a stick (rewrite, hairpin)
    (1, 100, V300),    # VLAN -> VLAN on another port (rewrite)
    (1, 100, U2),      # VLAN -> untagged (pop)
    (1, 100, U1),      # VLAN -> untagged on the same port (pop, hairpin)
    (2, None, U1),     # untagged -> untagged on a router with VLANs
    (3, 400, V100),    # from a VLAN-only port
], ids=["push", "push-same-port", "stick", "rewrite", "pop", "pop-same-port", "untagged", "vlan-only-port"])
def test_every_tag_transition(switch, family, src_port, src_vid, dst):
    pkt = frame(host(dst, family), src_port, src_vid)
    assert forwarded(switch, pkt) == (dst.number, dst.vid or None, host_mac(dst))


@pytest.mark.parametrize("dst,gateway_tap", [("198.51.100.7", V100)])
def test_route_via_a_gateway_on_a_vlan(switch, dst, gateway_tap):
    assert forwarded(switch, frame(dst, 2, None)) == (1, 100, host_mac(gateway_tap))
    assert forwarded(switch, frame(dst, 2, 300)) == (1, 100, host_mac(gateway_tap))


@pytest.mark.parametrize("dst", ["203.0.113.9", "2001:db8:ecc::9"])
def test_ecmp_across_a_vlan_and_an_untagged_port(switch, dst):
    seen = {forwarded(switch, frame(dst, 3, 400, sport=sport))[:2] for sport in range(1000, 1064)}
    assert seen == {(1, 200), (2, None)}


def _ingress(sw: Switch, pkt: dict):
    return sw.table.lookup(int(Table.INGRESS), pkt)


def test_unknown_vlan_is_dropped_by_its_counted_flow(switch):
    for port, vid in ((1, 999), (2, 100), (3, 300)):  # 100 is port 1's, not port 2's
        pkt = frame("10.0.1.2", port, vid)
        assert switch.table.process(pkt).dropped
        flow = _ingress(switch, pkt)
        assert flow.cookie == pipeline.drop_cookie(Owner.UNKNOWN_VLAN, port) and not flow.actions and flow.goto is None


@pytest.mark.parametrize("inner", [ETH_TYPE_VLAN, ETH_TYPE_QINQ])
def test_double_tagged_is_dropped_by_its_counted_flow_even_to_the_router(switch, inner):
    pkt = dict(frame("10.100.0.1", 1, 100), eth_type=inner)  # Open vSwitch: eth_type is the inner TPID
    assert switch.table.process(pkt).dropped
    assert _ingress(switch, pkt).cookie == pipeline.drop_cookie(Owner.DOUBLE_TAGGED, 1)


def test_known_vlan_frame_for_another_mac_is_dropped_uncounted(switch):
    pkt = frame("10.100.0.2", 1, 100, eth_dst=HOST_MAC)
    assert switch.table.process(pkt).dropped
    assert _ingress(switch, pkt).cookie == pipeline.cookie(Owner.PORT)


def test_untagged_and_tagged_stay_apart(switch):
    # Port 3 carries VLAN 400 only: an untagged frame to the router finds no flow.
    assert _ingress(switch, frame("10.40.0.1", 3, None)) is None
    assert switch.table.process(frame("10.40.0.1", 3, None)).dropped
    # A VLAN's accepting flows match its tag only, an untagged TAP's no tag.
    for flow in switch.table.snapshot():
        if flow.table == Table.INGRESS and flow.goto is not None:
            (tag,) = [f for f in flow.match.fields if f.name == "vlan_vid"]
            assert tag.mask is None


def test_punted_frames_keep_their_tag_for_the_relay(switch):
    arp = {"in_port": 1, "vlan_vid": OFPVID_PRESENT | 200, "vlan_pcp": 6, "eth_src": HOST_MAC,
           "eth_dst": 0xFFFFFFFFFFFF, "eth_type": ETH_TYPE_ARP, "arp_tpa": int(ipaddress.ip_address("10.200.0.1"))}
    fate = switch.table.process(arp)
    assert fate.controller_packets == (arp,)  # the relay strips the tag and picks VLAN 200's TAP
    own = frame("10.100.0.1", 1, 100)
    assert switch.table.process(own).controller_packets == (own,)


def test_ttl_expiry_reaches_the_controller_tagged(switch):
    pkt = dict(frame(host(V300, 4), 1, 100), ttl=1)
    fate = switch.table.process(pkt)
    assert fate.ttl_expired and fate.controller_packets == (pkt,)


def test_buckets_set_the_tag_of_their_egress_tap(switch):
    specs = list(switch.planner.fib.switch_groups.values())
    kinds = {tuple(type(a).__name__ for a in b.actions[:4]) for spec in specs for b in spec.buckets}
    assert ("DecTtl", "PopVlan", "PushVlan", "SetField") in kinds  # to a VLAN
    assert ("DecTtl", "PopVlan", "SetField", "SetField") in kinds  # to an untagged TAP
    for spec in specs:
        for bucket in spec.buckets:
            sets = [a for a in bucket.actions if isinstance(a, SetField) and a.name == "vlan_vid"]
            if PushVlan() in bucket.actions:
                assert len(sets) == 1 and sets[0].value & OFPVID_PRESENT
            else:
                assert not sets and PopVlan() in bucket.actions


def test_router_without_vlans_plans_no_tag_matches_or_actions():
    plain = tuple(Port(p.ifindex, p.number, p.mac, p.addresses) for p in TAPS if not p.vid)
    sw = Switch()
    sw.sync(Kernel(plain).neigh(U2, "10.0.2.2", HOST_MAC).route("198.51.100.0/24", _via(U2, "10.0.2.2")))
    flows = sw.table.snapshot()
    assert flows and not any(f.name in ("vlan_vid",) for flow in flows for f in flow.match.fields)
    assert not any(pipeline.owner_of(f.cookie) in pipeline.DROP_REASONS for f in flows)
    actions = [a for spec in sw.planner.fib.switch_groups.values() for b in spec.buckets for a in b.actions]
    assert actions and not any(isinstance(a, (PushVlan, PopVlan)) or getattr(a, "name", "") == "vlan_vid"
                               for a in actions)


def test_vlan_flows_and_groups_read_back_equal_on_the_wire(switch):
    ours = [f for f in switch.table.snapshot() if f.table == Table.INGRESS]
    assert any(f.cookie == pipeline.drop_cookie(Owner.DOUBLE_TAGGED, 3) for f in ours)
    for flow in ours:
        buf = wire.encode_flow_mod(FlowOp(Op.ADD, flow))
        stats = parser.OFPFlowStats.parser(as_flow_stats(buf, flow.table, flow.priority, flow.cookie), 0)
        assert decode.flow_from_stats(stats) == flow
    groups = switch.planner.fib.switch_groups
    assert groups
    for gid, spec in groups.items():
        assert decode.group_from_desc(group_desc(gid, spec)) == spec


def test_drop_counts_by_port_and_reason():
    counters = {pipeline.drop_cookie(Owner.UNKNOWN_VLAN, 1): (5, 500),
                pipeline.drop_cookie(Owner.DOUBLE_TAGGED, 1): (2, 200),
                pipeline.drop_cookie(Owner.DOUBLE_TAGGED, 1) + 0: (2, 200),
                pipeline.drop_cookie(Owner.UNKNOWN_VLAN, 7): (1, 100),
                pipeline.cookie(Owner.PORT): (9, 900)}
    assert drop_counts(counters) == {(1, "unknown_vlan"): 5, (1, "double_tagged"): 2, (7, "unknown_vlan"): 1}


def test_lookup_names_the_vlan_tap_of_each_bucket(switch):
    fib = switch.fib
    taps = {(t.number, t.vid or 0): t.name for t in TAPS}
    hopsets = {gid: shards.hopset for gid, shards in fib.books.owner.items()}
    found = lookup.switch_entry(fib.targets, fib.switch_groups, ipaddress.ip_address("203.0.113.9"), taps,
                                kernel().state(), hopsets)
    assert sorted((h["port"], h["tap"], h["via"]) for h in found["next_hops"]) == [
        (1, "tap1.200", "10.200.0.2"), (2, "tap2", "10.0.2.2")]
