"""The routing offload across passes: what a change, a restart or a reconnection sends to the switch,
sharding over groups, and group ids (fibharness.Switch on the in-memory table)."""

from __future__ import annotations

import dataclasses
import ipaddress
import random
import struct
from collections import Counter

import pytest
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser
from os_ken.ofproto.ofproto_protocol import ProtocolDesc

import osken_reference
from oftable import OFTable
from taprouter.controller.openflow import decode, pipeline
from taprouter.controller.planner import baseflows, fib
from taprouter.controller.openflow.groups import Bucket, GroupSpec, GroupType
from taprouter.controller.planner.fibstate import FibState
from taprouter.controller.openflow.flows import (DecTtl, ETH_TYPE_IPV4, ETH_TYPE_IPV6, Flow, Match, Output, SetField, ToGroup, exact, prefix_match, to_controller)
from taprouter.controller.openflow.ops import GroupOp, Op
from taprouter import prefix as pfx
from taprouter.routing.model import KernelState
from fibharness import (GW1, GW1_6, GW2, GW2_6, GW3, GW3_6, Kernel, MAC1, MAC2, MAC3, MAC_NEW, OTHER, P1, P2, P3, PORTS,
                        Switch, Want, flows_per_group, gateways, installed, via)


# --- reconciling ---------------------------------------------------------------------------------


def rich_kernel() -> Kernel:
    k = gateways()
    k.route("0.0.0.0/0", via(GW3, P3)).route("10.9.0.0/16", via(GW1, P1)).route("10.9.1.0/24", via(GW2, P2))
    k.route("10.10.0.0/16", via(GW1, P1), via(GW2, P2, weight=2)).route("10.11.0.0/16", kind=OTHER)
    k.route("10.12.0.0/16", via("10.0.1.99", P1)).route("::/0", via(GW3_6, P3))
    k.route("2001:db8:99::/48", via(GW1_6, P1), via(GW2_6, P2)).route("2001:db8:98::/48", via(GW2_6, P2))
    k.neigh(P1, "10.0.1.7", MAC2).neigh(P2, "2001:db8:2::7", MAC3)
    return k


def test_add_then_delete_a_route_leaves_the_switch_identical():
    k = rich_kernel()
    sw = installed(k)
    flows, groups = sw.table.snapshot(), sw.table.group_snapshot()
    for extra in ([("10.20.0.0/16", via(GW1, P1))],  # reuses a group
                  [("10.21.0.0/16", via(GW1, P2))],  # a new group
                  [("10.22.0.0/16", via(GW1, P1), via(GW3, P3))],  # a new select group
                  [("2001:db8:55::/48", via(GW3_6, P3))]):
        dst, *hops = extra[0]
        k.route(dst, *hops)
        s = sw.sync(k)
        assert s.ops
        k.unroute(dst)
        sw.sync(k)
        assert sw.table.snapshot() == flows and sw.table.group_snapshot() == groups


def test_unchanged_kernel_reconciles_to_nothing_and_replaying_ops_changes_nothing():
    k = rich_kernel()
    sw = Switch(OFTable(strict=False, invalid_ttl_to_controller=True))
    s = sw.sync(k)
    assert sw.sync(k).ops == []
    flows, groups = sw.table.snapshot(), sw.table.group_snapshot()
    sw.table.apply(s.group_upserts)
    sw.table.apply(s.flow_ops)
    sw.table.apply(s.group_deletes)
    assert sw.table.snapshot() == flows and sw.table.group_snapshot() == groups
    # A switch answers each repeated group add with GROUP_EXISTS, and changes nothing.
    assert len(sw.table.errors) == len(s.group_upserts)
    # Replaying a change's ops twice too.
    k.neigh(P1, GW1, MAC_NEW).unroute("10.9.1.0/24").route("10.30.0.0/16", via(GW3, P3), via(GW2, P2))
    s = sw.sync(k)
    flows, groups = sw.table.snapshot(), sw.table.group_snapshot()
    sw.table.apply(s.ops)
    assert sw.table.snapshot() == flows and sw.table.group_snapshot() == groups
    assert sw.sync(k).ops == []


def test_every_planned_flow_fits_the_schema_and_is_ours():
    s = Switch().sync(rich_kernel())
    for flow in s.want.flows:
        assert pipeline.check(flow) is flow
    routes = [f for f in s.want.flows if f.cookie == pipeline.cookie(pipeline.Owner.ROUTE)]
    assert len(routes) == len(s.targets)
    for flow in routes:
        dst = [m for m in flow.match.fields if m.name in ("ipv4_dst", "ipv6_dst")]
        length = 0 if not dst else (bin(dst[0].mask).count("1") if dst[0].mask is not None
                                    else 32 if dst[0].name == "ipv4_dst" else 128)
        assert flow.priority == pipeline.FIB_PRIORITY_BASE + length
        if flow.actions == (to_controller(),):
            assert flow.meter == pipeline.SLOW_PATH_METER
        else:
            (action,) = flow.actions
            assert isinstance(action, ToGroup) and pipeline.owns_group(action.group_id) and flow.meter is None
    assert all(pipeline.owns_group(gid) for gid in s.want.groups)


def test_no_ports_no_fib():
    k = rich_kernel()
    assert baseflows.build([]) == frozenset()
    state = FibState()
    state.adopt({}, {})
    # As the daemon calls it: a full pass walks the mirror's items, and with no port there is none.
    routes = k.mirror()
    assert not state.sync(routes, k.state(), {}, (), True, True, lambda: list(routes.items()))
    assert state.targets == {}


def test_plan_does_not_depend_on_dict_order():
    k = rich_kernel()
    a = Switch()
    a.sync(k)
    state = k.state()
    flipped = KernelState(state.links, dict(reversed(state.neighbours.items())), state.addresses)
    b = FibState()
    b.adopt({}, {})
    changes = b.sync(dict(reversed(k.mirror().items())), flipped, dict(reversed(k.bindings().items())), (),
                     True, True)
    content = lambda flows, groups: {pk: (groups[t] if t in groups else pipeline.KERNEL) for pk, t in flows.items()}  # noqa: E731
    assert content(b.targets, b.switch_groups) == content(a.fib.targets, a.fib.switch_groups)
    assert len(changes.group_upserts) == len(a.fib.switch_groups)


FOREIGN_COOKIES = [0, 0x1234, 0x7A71 << 48, (1 << 64) - 1]
FOREIGN_GROUP_IDS = [1, 2, 77, pipeline.POLICY_GROUP_MIN - 1, pipeline.GROUP_MAX + 1, 0xFFFFFF00]


def _random_spec(rng: random.Random) -> GroupSpec:
    def bucket(weight):
        port = rng.choice(PORTS)
        return Bucket(weight, (DecTtl(), SetField("eth_src", port.mac),
                               SetField("eth_dst", rng.getrandbits(47) << 1), Output(port.number)))
    if rng.random() < 0.5:
        return GroupSpec(GroupType.INDIRECT, (bucket(0),))
    return GroupSpec(GroupType.SELECT, tuple(sorted(bucket(rng.randrange(1, 4)) for _ in range(rng.randrange(2, 4)))))


def _route_flow(dst: str, actions, cookie=pipeline.cookie(pipeline.Owner.ROUTE), priority=None) -> Flow:
    net = ipaddress.ip_network(dst)
    table, eth, name = ((pipeline.Table.FIB4, ETH_TYPE_IPV4, "ipv4_dst") if net.version == 4
                        else (pipeline.Table.FIB6, ETH_TYPE_IPV6, "ipv6_dst"))
    return Flow(table, pipeline.FIB_PRIORITY_BASE + net.prefixlen if priority is None else priority,
                Match.of(exact("eth_type", eth), prefix_match(name, net)), tuple(actions),
                meter=pipeline.SLOW_PATH_METER if to_controller() in actions else None, cookie=cookie)


def arbitrary_installed(rng: random.Random, want: Want):
    """A switch as a crash, an older version or another controller may have left it.

    Returns the table and what is foreign in it (which must survive untouched).
    """
    groups: dict[int, GroupSpec] = {}
    for gid, spec in want.groups.items():
        r = rng.random()
        if r < 0.5:
            groups[gid] = spec
        elif r < 0.75:
            groups[gid] = _random_spec(rng)  # same id, other content
    stale_ids = [pipeline.GROUP_MIN + 0x1000 + i for i in range(rng.randrange(0, 5))]
    for gid in stale_ids:
        groups[gid] = rng.choice(list(want.groups.values())) if want.groups and rng.random() < 0.5 \
            else _random_spec(rng)
    foreign_groups = {gid: _random_spec(rng) for gid in rng.sample(FOREIGN_GROUP_IDS, rng.randrange(0, 4))}
    ours = list(groups)
    flows: dict = {}
    for flow in sorted(want.flows):
        missing = [a for a in flow.actions if isinstance(a, ToGroup) and a.group_id not in groups]
        r = rng.random()
        if r < 0.45 and not missing:
            flows[flow.key] = flow
        elif r < 0.7:
            if ours and rng.random() < 0.5:
                actions, meter = (ToGroup(rng.choice(ours)),), None
            else:
                actions, meter = (to_controller(),), rng.choice([None, pipeline.SLOW_PATH_METER])
            flows[flow.key] = Flow(flow.table, flow.priority, flow.match, actions, flow.goto, meter,
                                   rng.choice([flow.cookie, pipeline.cookie(pipeline.Owner.PORT)]))
    for i in range(rng.randrange(0, 6)):  # ours, no longer wanted
        actions = (ToGroup(rng.choice(ours)),) if ours and rng.random() < 0.7 else (to_controller(),)
        stale = _route_flow(rng.choice([f"10.200.{i}.0/24", f"2001:db8:200:{i}::/64"]), actions)
        flows[stale.key] = stale
    foreign = set()
    for i in range(rng.randrange(0, 6)):
        actions = ((ToGroup(rng.choice(list(foreign_groups))),) if foreign_groups and rng.random() < 0.5
                   else (Output(rng.randrange(1, 5)),))
        flow = _route_flow(rng.choice([f"192.0.2.{i}/32", f"2001:db8:f00::{i}/128"]), actions,
                           cookie=rng.choice(FOREIGN_COOKIES), priority=1000 + i)
        flow = dataclasses.replace(flow, meter=None)
        foreign.add(flow)
        flows[flow.key] = flow
    assert not {f.key for f in foreign} & {f.key for f in want.flows}
    table = OFTable(flows.values(), {**groups, **foreign_groups}, invalid_ttl_to_controller=True)
    return table, frozenset(foreign), foreign_groups


@pytest.mark.parametrize("seed", range(30))
def test_reconcile_from_an_arbitrary_switch_reaches_exactly_desired_plus_foreign(seed):
    rng = random.Random(seed)
    k = rich_kernel()
    if seed % 3 == 0:
        k.neigh(P2, GW2, MAC_NEW)
    if seed % 4 == 1:
        k.set_up(P3, False)
    sw = Switch()
    want = sw.sync(k).want  # the daemon ran, then the switch was changed behind its back
    sw.table, foreign, foreign_groups = arbitrary_installed(rng, want)
    s = sw.sync(k, adopt=True)  # as after every (re)connection: read back, then reconcile
    assert s.want.flows == want.flows or {f.key for f in s.want.flows} == {f.key for f in want.flows}
    want = s.want
    assert sw.table.snapshot() == want.flows | foreign
    assert sw.table.group_snapshot() == {**want.groups, **foreign_groups}
    assert sw.table.errors == []
    assert sw.sync(k).ops == []
    assert sw.send("10.9.2.1") == (1, MAC1)


@pytest.mark.parametrize("seed", range(15))
def test_restart_from_an_arbitrary_switch_converges(seed):
    rng = random.Random(1000 + seed)
    k = rich_kernel()
    old = k.plan().want
    table, foreign, foreign_groups = arbitrary_installed(rng, old)
    sw = Switch(table)  # a fresh daemon: no memory of ids
    s = sw.sync(k, adopt=True)
    assert sw.table.snapshot() == s.want.flows | foreign
    assert sw.table.group_snapshot() == {**s.want.groups, **foreign_groups}
    assert sw.sync(k).ops == []
    assert sw.send("10.9.2.1") == (1, MAC1) and sw.send("10.9.1.1") == (2, MAC2)


def test_restart_with_an_unchanged_kernel_changes_nothing():
    k = rich_kernel()
    before = installed(k)
    # Some history, so ids are not simply allocated in order.
    for i in range(5):
        before.sync(k.route(f"10.{40 + i}.0.0/16", via(GW3, P3), via(GW1, P1, weight=i + 1)))
    before.sync(k.unroute("10.41.0.0/16").unroute("10.43.0.0/16"))
    before.sync(k.route("10.50.0.0/16", via(GW2, P2), via(GW3, P3)))
    after = Switch(before.table)
    s = after.sync(k, adopt=True)
    assert s.ops == []


def test_restart_after_sharding_history_changes_nothing(monkeypatch):
    monkeypatch.setattr(fib, "ROUTES_PER_GROUP", 4)
    k = gateways()
    sw = Switch()
    for count in (6, 14, 40):  # 2, then 4, then 16 shards
        for i in range(count):
            k.route(f"10.{100 + i}.0.0/16", via(GW1, P1))
        sw.sync(k)
    after = Switch(sw.table)
    s = after.sync(k, adopt=True)
    assert s.ops == []


def test_restart_after_a_kernel_change_converges():
    k = rich_kernel()
    sw = installed(k)
    k.neigh(P1, GW1, MAC_NEW).unroute("10.9.1.0/24").route("10.31.0.0/16", via(GW2, P2))
    after = Switch(sw.table)
    s = after.sync(k, adopt=True)
    assert s.ops
    assert after.sync(k).ops == []
    assert after.send("10.9.1.1") == (1, MAC_NEW) and after.send("10.31.0.1") == (2, MAC2)


# --- sharding ------------------------------------------------------------------------------------


def _sharded(monkeypatch, prefixes: list[str]):
    monkeypatch.setattr(fib, "ROUTES_PER_GROUP", 4)
    k = Kernel().neigh(P1, GW1, MAC1)
    for p in prefixes:
        k.route(p, via(GW1, P1))
    sw = Switch()
    return k, sw, sw.sync(k)


def _random_prefixes(seed: int, n: int) -> list[str]:
    rng = random.Random(seed)
    nets: set = set()
    while len(nets) < n:
        nets.add(ipaddress.ip_network((rng.randrange(0x0B000000, 0xDF000000), rng.choice([16, 20, 24, 28])),
                                      strict=False))
    return [str(n) for n in sorted(nets)]


SEQUENTIAL = [f"10.{100 + i // 200}.{i % 200}.0/24" for i in range(50)]


def test_sharded_groups_are_identical_and_every_route_forwards(monkeypatch):
    for prefixes in (SEQUENTIAL, _random_prefixes(1, 50)):
        k, sw, s = _sharded(monkeypatch, prefixes)
        specs = set(s.want.groups.values())
        assert len(specs) == 1 and len(s.want.groups) > 1
        assert sum(flows_per_group(s.want.flows).values()) == len(prefixes) + 1  # + the gateway's host entry
        for p in prefixes:
            net = ipaddress.ip_network(p)
            for addr in (net.network_address, net.broadcast_address):
                assert sw.send(str(addr)) == (1, MAC1), p
        # A MAC change rewrites every shard and no flow.
        s = sw.sync(k.neigh(P1, GW1, MAC_NEW))
        assert s.counts() == Counter({"group-modify": len(s.want.groups)})
        assert sw.send(prefixes[0].split("/")[0]) == (1, MAC_NEW)
        # Shrinking leaves routes in the groups they had (no churn), and empty groups go.
        for p in prefixes[3:]:
            k.unroute(p)
        s = sw.sync(k)
        assert 1 <= len(s.want.groups) <= 4
        assert set(flows_per_group(s.want.flows)) == set(s.want.groups)
        assert sw.send(prefixes[0].split("/")[0]) == (1, MAC_NEW)
        monkeypatch.undo()


def test_sharding_bounds_routes_per_group_sequential(monkeypatch):
    _, _, s = _sharded(monkeypatch, SEQUENTIAL)
    assert max(flows_per_group(s.want.flows).values()) <= 4


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sharding_bounds_routes_per_group_random_prefixes(monkeypatch, seed):
    _, _, s = _sharded(monkeypatch, _random_prefixes(seed, 50))
    assert max(flows_per_group(s.want.flows).values()) <= 4


def test_no_sharding_under_the_bound(monkeypatch):
    _, _, s = _sharded(monkeypatch, SEQUENTIAL[:3])
    assert len(s.want.groups) == 1


def test_routes_whose_group_goes_go_with_it_rather_than_one_delete_each(monkeypatch):
    """Deleting a group deletes the flows that forward to it (OpenFlow 1.3), and Open vSwitch does
    that far cheaper than flow by flow; routes on groups that stay are deleted one by one."""
    k, sw, _ = _sharded(monkeypatch, SEQUENTIAL)
    shards: dict[int, list[str]] = {}
    for pk, gid in sw.fib.targets.items():
        net = str(pfx.to_network(pk))
        if net in SEQUENTIAL:
            shards.setdefault(gid, []).append(net)
    emptied, thinned = [nets for nets in shards.values() if len(nets) == 4][:2]
    for net in emptied + thinned[:2]:
        k.unroute(net)
    s = sw.sync(k)  # the harness checks the switch holds exactly what the daemon means
    assert s.counts() == Counter({"group-delete": 1, "flow-delete": 2})
    for net in emptied + thinned[:2]:
        assert sw.send(net.split("/")[0]) != (1, MAC1)
    for net in thinned[2:]:
        assert sw.send(net.split("/")[0]) == (1, MAC1)


# --- groups over the wire and back -----------------------------------------------------------------


DP = ProtocolDesc(ofp.OFP_VERSION)


def _as_group_desc(group_mod_buf: bytes) -> parser.OFPGroupDescStats:
    """The group-desc entry a switch would report for this group_mod, built from its wire bytes."""
    command, type_, group_id = struct.unpack_from("!HBxI", group_mod_buf, ofp.OFP_HEADER_SIZE)
    assert command == ofp.OFPGC_ADD
    buckets = group_mod_buf[ofp.OFP_GROUP_MOD_SIZE:]
    desc = struct.pack(ofp.OFP_GROUP_DESC_STATS_PACK_STR, ofp.OFP_GROUP_DESC_STATS_SIZE + len(buckets),
                       type_, group_id) + buckets
    return parser.OFPGroupDescStats.parser(desc, 0)


def test_planned_groups_read_back_equal():
    # What adopt() compares after a restart: a group read back must equal the planned spec.
    s = Switch().sync(rich_kernel())
    types = Counter(g.type for g in s.want.groups.values())
    assert types[GroupType.INDIRECT] and types[GroupType.SELECT]
    for gid, spec in s.want.groups.items():
        msg = osken_reference.group_mod(DP, GroupOp(Op.ADD, gid, spec))
        msg.serialize()
        stats = _as_group_desc(bytes(msg.buf))
        assert stats.group_id == gid
        assert decode.group_from_desc(stats) == spec
        # A switch may list a select group's buckets in another order.
        stats.buckets.reverse()
        assert decode.group_from_desc(stats) == spec


# --- group ids -----------------------------------------------------------------------------------


def _gid(sw: Switch, dst: str) -> int:
    net = ipaddress.ip_network(dst)
    (flow,) = [f for f in sw.table.snapshot() if f.key == pipeline.route_flow(pfx.from_network(net), pipeline.KERNEL).key]
    return flow.actions[0].group_id


def test_group_ids_are_stable_and_freed_ids_are_not_reused_at_once():
    k = gateways().route("10.9.0.0/16", via(GW1, P1), via(GW2, P2)).route("10.8.0.0/16", via(GW2, P2), via(GW3, P3))
    sw = installed(k)
    before = set(sw.fib.switch_groups)
    assert all(pipeline.owns_group(g) for g in before)
    kept, freed = _gid(sw, "10.9.0.0/16"), _gid(sw, "10.8.0.0/16")
    sw.sync(k.unroute("10.8.0.0/16").route("10.7.0.0/16", via(GW1, P1), via(GW3, P3)))
    assert _gid(sw, "10.9.0.0/16") == kept  # the group that stayed kept its id
    assert freed not in sw.fib.switch_groups
    assert _gid(sw, "10.7.0.0/16") not in before  # a flow still naming the old id never sees new content


def test_group_ids_wrap_around_the_range_without_collisions(monkeypatch):
    monkeypatch.setattr("taprouter.controller.planner.groupbooks.GROUP_MAX", pipeline.GROUP_MIN + 2)
    # Link-local gateways: no host entries, so the only groups are the routes'.
    k = Kernel().neigh(P1, GW1_6, MAC1).neigh(P2, GW2_6, MAC2)
    sw = Switch()
    for i in range(10):
        k.route(f"2001:db8:{50 + i}::/48", via(GW1_6, P1), via(GW2_6, P2, weight=i + 1))
        sw.sync(k)
        k.unroute(f"2001:db8:{50 + i}::/48")
        sw.sync(k)
        assert sw.fib.switch_groups == {}
    used = set()
    for i in range(3):
        k.route(f"2001:db8:{70 + i}::/48", via(GW1_6, P1), via(GW2_6, P2, weight=i + 1))
        sw.sync(k)
        used.add(_gid(sw, f"2001:db8:{70 + i}::/48"))
    assert used == set(range(pipeline.GROUP_MIN, pipeline.GROUP_MIN + 3))
    k.route("2001:db8:80::/48", via(GW1_6, P1), via(GW2_6, P2, weight=9))
    with pytest.raises(RuntimeError):
        sw.sync(k, check_restart=False)


def test_restart_takes_back_a_group_whose_content_changed_without_touching_flows():
    k = rich_kernel()
    sw = installed(k)
    k.neigh(P1, GW1, MAC_NEW)
    s = Switch(sw.table).sync(k, adopt=True)
    assert s.flow_ops == [] and {op.op for op in s.group_upserts} == {Op.MODIFY} and not s.group_deletes
