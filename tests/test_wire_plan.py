"""wire against os-ken on a real plan: the punt flows, FIB flows and groups FibState and desired make
from a small kernel, and route flow_mods from templates at every length."""

from __future__ import annotations

import dataclasses
import ipaddress
import random
from collections import Counter

import pytest
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

import osken_reference
from taprouter.controller.openflow import pipeline, wire
from taprouter.controller.planner import baseflows, punt
from taprouter.controller.openflow.groups import GroupSpec, GroupType
from taprouter.controller.planner.fib import PortBinding
from taprouter.controller.openflow.flows import Flow, Match, ToGroup, exact, to_controller
from taprouter.mac import mac_to_int
from taprouter.controller.planner.fibstate import FibState
from taprouter import prefix as pfx
from taprouter.controller.openflow.ops import FlowOp, GroupOp, Op
from taprouter.routing.model import (NUD_INCOMPLETE, NUD_PERMANENT, NUD_REACHABLE, NUD_STALE, Address,
                                     KernelState, Link, Neighbour, NextHop, Route, RouteKey, RouteKind)

from test_wire import DP, SEED, bundle_add, check_flow, check_group, reference_flow_mod


MACS = {11: mac_to_int("0e:00:00:00:00:01"), 12: mac_to_int("0e:00:00:00:00:02"),
        13: mac_to_int("0e:00:00:00:00:03")}
ADDRESSES = {11: ("10.0.1.1/24", "2001:db8:1::1/64", "fe80::1/64"),
             12: ("10.0.2.1/30", "2001:db8:2::1/64"),
             13: ("192.0.2.1/32",)}
SWITCH_PORT = {11: 1, 12: 2, 13: 0xFFFFFF00 - 1}
ETH0 = 20  # a kernel interface that is not on the switch
SHARDED = 1500  # more routes than one group carries, via one gateway


def via(ifindex: int, gateway: str, weight: int = 1) -> NextHop:
    return NextHop(ifindex, ipaddress.ip_address(gateway), weight)


def kernel() -> tuple[dict[int, tuple], KernelState]:
    routes: dict[RouteKey, Route] = {}

    def route(dst: str, *hops: NextHop, metric: int = 0, kind: RouteKind = RouteKind.UNICAST) -> None:
        net = ipaddress.ip_network(dst)
        routes[RouteKey(net, metric)] = Route(net, metric, kind, tuple(sorted(hops)))

    for ifindex, texts in ADDRESSES.items():
        for text in texts:
            net = ipaddress.ip_interface(text).network
            route(str(net), NextHop(ifindex, None), metric=0 if net.version == 4 else 256)
    route("0.0.0.0/0", via(11, "10.0.1.2"))
    route("::/0", via(11, "fe80::1:2"), metric=1024)
    route("198.51.100.0/24", via(11, "10.0.1.2"), via(12, "10.0.2.2", 3))
    route("198.51.100.128/25", via(11, "10.0.1.2"), via(12, "10.0.2.2"), via(11, "10.0.1.3", 7))
    route("2001:db8:99::/48", via(11, "fe80::1:2"), via(12, "fe80::2:2", 2), metric=1024)
    route("2001:db8:98::/47", via(12, "fe80::2:2"), metric=1024)
    route("203.0.113.0/24", kind=RouteKind.OTHER)
    route("203.0.114.0/24", via(12, "10.0.2.9"))  # unresolved next hop: to the kernel
    route("172.16.0.0/12", via(ETH0, "172.31.0.1"))  # off the switch: to the kernel
    route("10.0.1.128/32", via(11, "10.0.1.2"))
    rng = random.Random(SEED + 2)
    for _ in range(SHARDED):
        route(str(ipaddress.IPv4Network((rng.getrandbits(32), rng.randint(8, 32)), strict=False)),
              via(12, "10.0.2.2"), metric=rng.choice([0, 100]))
    neighbours = [Neighbour(11, ipaddress.ip_address("10.0.1.2"), mac_to_int("02:00:00:00:01:02"), NUD_REACHABLE),
                  Neighbour(11, ipaddress.ip_address("10.0.1.3"), mac_to_int("02:00:00:00:01:03"), NUD_STALE),
                  Neighbour(11, ipaddress.ip_address("10.0.1.50"), mac_to_int("02:00:00:00:01:50"), NUD_PERMANENT),
                  Neighbour(12, ipaddress.ip_address("10.0.2.2"), mac_to_int("02:00:00:00:02:02"), NUD_REACHABLE),
                  Neighbour(12, ipaddress.ip_address("10.0.2.9"), None, NUD_INCOMPLETE),
                  Neighbour(11, ipaddress.ip_address("fe80::1:2"), mac_to_int("02:00:00:00:01:02"), NUD_REACHABLE),
                  Neighbour(12, ipaddress.ip_address("fe80::2:2"), mac_to_int("02:00:00:00:02:02"), NUD_REACHABLE),
                  Neighbour(11, ipaddress.ip_address("2001:db8:1::77"), mac_to_int("fe:ff:ff:ff:ff:ff"),
                            NUD_REACHABLE)]
    links = {i: Link(i, f"tap{i}", True, True) for i in ADDRESSES}
    links[ETH0] = Link(ETH0, "eth0", True, True)
    addresses = frozenset(Address(i, ipaddress.ip_interface(a)) for i, texts in ADDRESSES.items() for a in texts)
    mirror: dict[int, tuple] = {}
    for r in sorted(routes.values(), key=lambda r: (repr(r.dst), r.metric)):
        pk = pfx.from_network(r.dst)
        mirror[pk] = mirror.get(pk, ()) + (r.metric, None if r.kind is RouteKind.OTHER else r.nexthops)
    return mirror, KernelState(links, {n.key: n for n in neighbours}, addresses)


def port_views() -> list[punt.PortView]:
    return [punt.PortView(SWITCH_PORT[i], MACS[i], tuple(ipaddress.ip_interface(a) for a in texts))
            for i, texts in ADDRESSES.items()]


def bindings() -> dict[int, PortBinding]:
    return {i: PortBinding(i, SWITCH_PORT[i], MACS[i], up=i != 13) for i in ADDRESSES}


@dataclasses.dataclass(frozen=True)
class Planned:
    flows: frozenset[Flow]
    groups: dict[int, GroupSpec]
    routes: list[tuple[int, int]]  # (prefix, target) of every route flow


@pytest.fixture(scope="module")
def planned() -> Planned:
    routes, state = kernel()
    fib_state = FibState()
    fib_state.adopt({}, {})
    changes = fib_state.sync(routes, state, bindings(), (), True, True)
    targets = [(pk, target) for op, pk, target in changes.routes]
    others = baseflows.build(port_views())
    assert punt.plan(port_views()) <= others
    flows = others | {pipeline.route_flow(pk, target) for pk, target in targets}
    return Planned(flows, {op.group_id: op.spec for op in changes.group_upserts}, targets)


def test_the_plan_has_every_kind_of_flow_and_group(planned):
    flows = planned.flows
    assert {f.table for f in flows} == {int(t) for t in pipeline.Table}
    assert any(f.goto is not None for f in flows)
    assert any(f.meter is not None and f.actions == (to_controller(),) for f in flows)
    assert any(isinstance(a, ToGroup) for f in flows for a in f.actions)
    assert any(f.match == Match() for f in flows)
    assert any(f.match.fields and f.match.fields[-1].mask is not None and f.match.fields[-1].name == "ipv6_dst"
               for f in flows)
    assert any(f.match.fields[0] == exact("eth_dst", 0xFFFFFFFFFFFF) for f in flows if f.match.fields)
    types = Counter(spec.type for spec in planned.groups.values())
    assert types[GroupType.INDIRECT] >= 4 and types[GroupType.SELECT] >= 3, types
    assert max(len(spec.buckets) for spec in planned.groups.values()) == 3
    # The 1500 routes via 10.0.2.2 are sharded over groups of equal content.
    assert Counter(planned.groups.values()).most_common(1)[0][1] >= 2
    assert len(flows) > SHARDED


@pytest.mark.parametrize("kind", list(Op), ids=lambda op: op.value)
def test_planned_flow_mods_byte_identical_to_os_ken(planned, kind):
    for i, flow in enumerate(planned.flows):
        check_flow(FlowOp(kind, flow), i)


@pytest.mark.parametrize("kind", list(Op), ids=lambda op: op.value)
def test_planned_route_flow_mods_from_templates_byte_identical_to_os_ken(planned, kind):
    assert any(t == pipeline.KERNEL for _, t in planned.routes) and any(t != pipeline.KERNEL for _, t in planned.routes)
    for i, (pk, target) in enumerate(planned.routes):
        flow = pipeline.route_flow(pk, target)
        assert wire.encode_route(kind, pk, target, i) == reference_flow_mod(FlowOp(kind, flow), i)


@pytest.mark.parametrize("kind", list(Op), ids=lambda op: op.value)
def test_route_templates_at_every_length_and_family(kind):
    rng = random.Random(SEED + 9)
    for bits, version in ((32, 4), (128, 6)):
        for length in range(bits + 1):
            value = rng.getrandbits(bits) >> (bits - length) << (bits - length) if length else 0
            pk = pfx.pack(version, value, length)
            for target in (pipeline.KERNEL, pipeline.GROUP_MIN + rng.randrange(1 << 20)):
                xid = rng.getrandbits(32)
                flow = pipeline.route_flow(pk, target)
                assert wire.encode_route(kind, pk, target, xid) == reference_flow_mod(FlowOp(kind, flow), xid)


@pytest.mark.parametrize("bundle_id", [None, 0x5EED])
@pytest.mark.parametrize("kind", list(Op), ids=lambda op: op.value)
def test_a_run_of_routes_encodes_as_each_route_alone(kind, bundle_id):
    """encode_routes (a pass's runs) against encode_route, which the tests above hold to os-ken: every
    length of both families, both targets, shapes interleaved and repeated (its templates are per
    shape), and the bundle add message os-ken makes around each when a bundle id is given."""
    rng = random.Random(SEED + 11)
    routes = []
    for bits, version in ((32, 4), (128, 6)):
        for length in list(range(bits + 1)) * 3:
            value = rng.getrandbits(bits) >> (bits - length) << (bits - length) if length else 0
            target = rng.choice((pipeline.KERNEL, pipeline.GROUP_MIN + rng.randrange(1 << 20)))
            routes.append((kind, pfx.pack(version, value, length), target))
    rng.shuffle(routes)
    got = wire.encode_routes(kind, routes, bundle_id)
    assert len(got) == len(routes)
    for message, (_, pk, target) in zip(got, routes):
        alone = wire.encode_route(kind, pk, target)
        assert message == (alone if bundle_id is None else bundle_add(bundle_id, alone))
    if bundle_id is not None:
        net = ipaddress.ip_network("20.1.2.0/24")
        msg = parser.ONFBundleAddMsg(DP, bundle_id, ofp.ONF_BF_ATOMIC | ofp.ONF_BF_ORDERED,
                                     osken_reference.flow_mod(DP, FlowOp(kind, pipeline.route_flow(pfx.from_network(net), 0x7A700001))), [])
        msg.set_xid(0)
        msg.serialize()
        assert wire.encode_routes(kind, [(kind, pfx.from_network(net), 0x7A700001)], bundle_id) == [bytes(msg.buf)]


@pytest.mark.parametrize("kind", list(Op), ids=lambda op: op.value)
def test_planned_group_mods_byte_identical_to_os_ken(planned, kind):
    for group_id, spec in planned.groups.items():
        check_group(GroupOp(kind, group_id, spec), group_id)
