"""Policies on the table model: each match field and action, port ranges, both families, scope, the
ND guard, timeouts, and a reconnection that changes nothing (the daemon's own Planner.plan)."""

from __future__ import annotations

import dataclasses
import ipaddress

import pytest

from fibharness import (GW2, GW2_6, GW3, HOST, HOST_MAC, KERNEL, MAC2, MAC3, P2, P3, Switch, fate, gateways,
                        packet, via)
from taprouter.controller.openflow import pipeline
from taprouter.controller.openflow.flows import ETH_TYPE_ARP, ETH_TYPE_IPV6, IPPROTO_ICMPV6
from taprouter.controller.openflow.meters import MeterSpec
from taprouter.controller.planner.policies import matches
from taprouter.policy.model import State, parse

IPPROTO_TCP = 6


def policy(name: str, pid: int, **fields):
    return dataclasses.replace(parse("r1", name, fields), id=pid)


def kernel():
    """Gateways on ports 1-3; 10.9.0.0/16 and 2001:db8:99::/48 routed via port 2."""
    return gateways().route("10.9.0.0/16", via(GW2, P2)).route("2001:db8:99::/48", via(GW2_6, P2))


def tcp(dst: str, dport: int, sport: int = 40000, src: str | None = None, in_port=HOST) -> dict[str, int]:
    pkt = packet(dst, in_port=in_port)
    del pkt["udp_src"], pkt["udp_dst"]
    pkt.update(ip_proto=IPPROTO_TCP, tcp_src=sport, tcp_dst=dport)
    if src is not None:
        pkt["ipv4_src" if ":" not in src else "ipv6_src"] = int(ipaddress.ip_address(src))
    return pkt


def synced(*policies, k=None) -> Switch:
    sw = Switch()
    sw.sync(k or kernel(), policies=policies)
    return sw


def test_without_policies_routed_traffic_is_forwarded():
    sw = synced()
    assert sw.send("10.9.1.1") == (P2.number, MAC2)
    assert fate(sw.table, tcp("10.9.1.1", 22)) == (P2.number, MAC2)


@pytest.mark.parametrize("dst", ["10.9.1.1", "2001:db8:99::1"])
def test_a_drop_stops_routed_traffic_of_both_families_and_removing_it_brings_it_back(dst):
    k = kernel()
    sw = Switch()
    sw.sync(k, policies=[policy("all", 1, action="drop")])
    assert sw.table.process(packet(dst)).dropped
    sw.sync(k, policies=[])
    assert sw.send(dst) == (P2.number, MAC2 if ":" not in dst else MAC2)


def test_a_permit_carves_an_exception_out_of_a_wider_drop():
    sw = synced(policy("drop-net", 1, dst="10.9.0.0/16", action="drop", priority=10),
                policy("let-one", 2, dst="10.9.7.0/24", action="permit", priority=20))
    assert sw.table.process(packet("10.9.1.1")).dropped
    assert sw.send("10.9.7.7") == (P2.number, MAC2)


@pytest.mark.parametrize("dport,dropped", [(999, False), (1000, True), (1500, True), (1999, True), (2000, False)])
def test_a_port_range_is_the_masked_blocks_that_tile_it(dport, dropped):
    p = policy("web", 1, proto="tcp", dport="1000-1999", action="drop")
    sw = synced(p)
    assert len(matches(p)) == 2 * 7  # both families; 1000-1999 is seven aligned blocks
    assert sw.table.process(tcp("10.9.1.1", dport)).dropped == dropped


def test_source_prefix_source_port_and_ingress_port_narrow_a_drop():
    sw = synced(policy("narrow", 1, src="10.0.4.0/24", proto="tcp", sport="40000", in_port="4", action="drop"))
    assert sw.table.process(tcp("10.9.1.1", 22, src="10.0.4.50")).dropped
    assert fate(sw.table, tcp("10.9.1.1", 22, src="10.0.99.50")) == (P2.number, MAC2)  # another source
    assert fate(sw.table, tcp("10.9.1.1", 22, sport=40001)) == (P2.number, MAC2)  # another source port
    from fibharness import P1
    assert fate(sw.table, tcp("10.9.1.1", 22, in_port=P1)) == (P2.number, MAC2)  # another ingress port


def test_icmp_type_matches_only_that_type():
    sw = synced(policy("no-echo", 1, proto="icmp", icmp_type="8", action="drop"))
    echo = dict(packet("10.9.1.1"), ip_proto=1, icmpv4_type=8)
    reply = dict(packet("10.9.1.1"), ip_proto=1, icmpv4_type=0)
    for pkt in (echo, reply):
        del pkt["udp_src"], pkt["udp_dst"]
    assert sw.table.process(echo).dropped
    assert fate(sw.table, reply) == (P2.number, MAC2)


def test_police_meters_then_routes():
    sw = synced(policy("cap", 1, dst="10.9.0.0/16", action="police", rate="500pps"))
    result = sw.table.process(packet("10.9.1.1"))
    (meter,) = result.meters
    assert pipeline.POLICY_METER_MIN <= meter <= pipeline.POLICY_METER_MAX
    assert sw.meters[meter] == MeterSpec.pps(500)
    assert fate(sw.table, packet("10.9.1.1")) == (P2.number, MAC2)
    kbit = synced(policy("cap", 1, dst="10.9.0.0/16", action="police", rate="2000kbps"))
    assert MeterSpec(2000, 200, kbps=True) in kbit.meters.values()


def test_forward_sends_a_routed_flow_to_another_next_hop_and_the_kernel_while_unresolved():
    p = policy("pbr", 1, src="10.0.4.0/24", dst="10.9.0.0/16", action="forward", via=GW3)
    k = kernel()
    sw = Switch()
    sw.sync(k, policies=[p])
    assert sw.send("10.9.1.1") == (P3.number, MAC3)
    k.unneigh(P3, GW3)  # its neighbour is gone: the kernel forwards, and is asked to resolve it
    s = sw.sync(k, policies=[p])
    assert sw.send("10.9.1.1") == KERNEL
    assert sw.planner.policy_table.states()[1][0] is State.PENDING
    assert any(key.ip == ipaddress.ip_address(GW3) for key in sw.last.unresolved)
    s = sw.sync(k.neigh(P3, GW3, MAC3), policies=[p])
    assert sw.send("10.9.1.1") == (P3.number, MAC3) and s.group_upserts


def test_forward_to_no_connected_subnet_fails_and_installs_nothing():
    p = policy("nowhere", 1, dst="10.9.0.0/16", action="forward", via="192.0.2.1")
    sw = synced(p)
    assert sw.planner.policy_table.states()[1] == (State.FAILED, "next hop 192.0.2.1 is on no subnet of a switch port")
    assert sw.send("10.9.1.1") == (P2.number, MAC2)


def to_router(dst: str, proto: int = 1) -> dict[str, int]:
    pkt = packet(dst)
    del pkt["udp_src"], pkt["udp_dst"]
    pkt.update(ip_proto=proto, icmpv4_type=8) if ":" not in dst else pkt.update(ip_proto=proto)
    return pkt


def test_only_a_to_router_policy_filters_traffic_to_the_router_and_arp_nd_always_pass():
    router = HOST.addresses[0].split("/")[0]
    routed_only = synced(policy("all", 1, action="drop"))
    assert routed_only.table.process(to_router(router)).to_controller  # the router's own: untouched
    sw = synced(policy("all", 1, action="drop", to_router=True))
    assert sw.table.process(to_router(router)).dropped
    arp = {"in_port": HOST.number, "eth_src": HOST_MAC, "eth_dst": 0xFFFFFFFFFFFF, "eth_type": ETH_TYPE_ARP,
           "arp_op": 1, "arp_tpa": int(ipaddress.ip_address(router))}
    assert sw.table.process(arp).to_controller
    router6 = HOST.addresses[1].split("/")[0]
    solicitation = dict(packet(router6), ip_proto=IPPROTO_ICMPV6, icmpv6_type=135, eth_type=ETH_TYPE_IPV6)
    del solicitation["udp_src"], solicitation["udp_dst"]
    assert sw.table.process(solicitation).to_controller
    echo6 = dict(solicitation, icmpv6_type=128)
    assert sw.table.process(echo6).dropped


def test_timeouts_ride_on_every_flow_of_the_policy_with_its_end_reported():
    sw = synced(policy("brief", 7, dst="10.9.0.0/16", action="drop", idle_timeout="30", hard_timeout="600"))
    flows = [f for f in sw.table.snapshot() if f.cookie == pipeline.policy_cookie(7)]
    assert flows and all((f.idle_timeout, f.hard_timeout, f.flags) == (30, 600, pipeline.OFPFF_SEND_FLOW_REM)
                         for f in flows)


def test_a_reconnection_reads_policies_back_and_changes_nothing():
    policies = [policy("drop-net", 1, dst="10.9.0.0/16", action="drop", priority=10),
                policy("cap", 2, dst="10.9.7.0/24", action="police", rate="100pps", priority=30),
                policy("pbr", 3, src="10.0.4.0/24", dst="10.9.8.0/24", action="forward", via=GW3, priority=40)]
    k = kernel()
    sw = Switch()
    sw.sync(k, policies=policies)
    again = sw.sync(k, adopt=True, policies=policies)  # a new connection: read back, then a full pass
    assert again.ops == [] and not sw.last.meters and not sw.last.meter_deletes
    assert sw.send("10.9.8.8") == (P3.number, MAC3)


def test_a_restart_before_the_store_is_read_leaves_the_policy_table_alone():
    """A daemon whose store has not answered yet knows no policies, which is not the same as
    knowing there are none: the switch keeps its policies, and once read they change nothing."""
    policies = [policy("drop-net", 1, dst="10.9.0.0/16", action="drop", priority=10),
                policy("cap", 2, dst="10.9.7.0/24", action="police", rate="100pps", priority=30),
                policy("pbr", 3, src="10.0.4.0/24", dst="10.9.8.0/24", action="forward", via=GW3, priority=40)]
    k = kernel()
    sw = Switch()
    sw.sync(k, policies=policies)
    waiting = sw.sync(k, adopt=True, policies=None)
    assert waiting.ops == [] and not sw.last.meter_deletes and not sw.last.group_deletes
    assert sw.table.process(packet("10.9.1.1")).dropped
    read = sw.sync(k, policies=policies)
    assert read.ops == [] and not sw.last.meters and not sw.last.meter_deletes
    assert sw.send("10.9.8.8") == (P3.number, MAC3)
    assert sw.sync(k, policies=[]).ops  # an empty store, read, is different: they go


def test_changing_one_policy_touches_its_flows_only():
    many = [policy(f"p{i}", i, dst=f"10.9.{i}.0/24", action="drop") for i in range(1, 40)]
    k = kernel()
    sw = Switch()
    sw.sync(k, policies=many)
    changed = many[:5] + [dataclasses.replace(many[5], priority=200)] + many[6:]
    s = sw.sync(k, policies=changed)
    assert {op.flow.cookie for op in s.flow_ops} == {pipeline.policy_cookie(6)}
    s = sw.sync(k, policies=changed[1:])
    assert [(op.op.value, op.flow.cookie) for op in s.flow_ops] == [("delete", pipeline.policy_cookie(1))]


def test_the_same_policies_again_or_equal_copies_plan_nothing():
    many = [policy(f"p{i}", i, dst=f"10.9.{i}.0/24", action="police" if i % 3 else "drop", rate="100pps")
            if i % 3 else policy(f"p{i}", i, dst=f"10.9.{i}.0/24", action="drop") for i in range(1, 30)]
    k = kernel()
    sw = Switch()
    sw.sync(k, policies=many)
    assert not sw.sync(k, policies=many).ops  # the very sequence: nothing looked at
    assert not sw.sync(k, policies=[dataclasses.replace(p) for p in many]).ops  # equal, not identical


def test_any_sequence_of_changes_leaves_what_a_restart_would_plan():
    # The policy table is planned incrementally: only the policies that changed, and their groups
    # and meters. After every step the harness checks that a daemon restarted against that switch
    # would change nothing: ids, groups and meters freed and taken as a full pass would have them.
    import random

    rng = random.Random(5)
    k = kernel()
    sw = Switch()
    current: dict[int, object] = {}
    actions = [dict(action="drop"), dict(action="permit"), dict(action="police", rate="100pps"),
               dict(action="police", rate="300pps"), dict(action="forward", via=GW3),
               dict(action="forward", via=GW2)]
    for step in range(120):
        pid = rng.randrange(1, 15)
        if pid in current and rng.random() < 0.3:
            del current[pid]
        else:
            fields = dict(rng.choice(actions), dst=f"10.9.{pid}.0/24", priority=rng.randrange(1, 5))
            if rng.random() < 0.2:
                fields.update(proto="tcp", dport="1000-1999")
            current[pid] = policy(f"p{pid}", pid, **fields)
        if step % 17 == 0:  # the forward's next hop comes and goes
            k = k.unneigh(P3, GW3) if step % 34 == 0 else k.neigh(P3, GW3, MAC3)
        sw.sync(k, policies=list(current.values()))
        table = sw.planner.policy_table
        for book, kind in ((table.group_ids, "group"), (table.meter_ids, "meter")):
            assert set(book.by_policy) == {pid for pid, p in table.planned.items() if getattr(p, kind) is not None}
    assert table.flow_count == sum(len(f) for f in table.installed.values())
