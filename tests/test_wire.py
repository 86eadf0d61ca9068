"""wire: FlowMod and GroupMod bytes identical to os-ken's, for generated flows and groups (a real plan:
test_wire_plan.py)."""

from __future__ import annotations

import ipaddress
import random
import struct
from collections import Counter

import pytest
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser
from os_ken.ofproto.ofproto_protocol import ProtocolDesc

import osken_reference
from taprouter.controller.openflow import decode, pipeline, wire
from taprouter.controller.openflow.groups import Bucket, GroupSpec, GroupType
from taprouter.controller.openflow.flows import (DecTtl, PopVlan, PushVlan, ETH_TYPE_IPV4, ETH_TYPE_IPV6, FIELDS, FieldMatch, Flow, MATCH_FIELDS, Match, OFPP_CONTROLLER, Output, SetField, ToGroup, exact, to_controller)
from taprouter import prefix as pfx
from taprouter.controller.openflow.ops import FlowOp, GroupOp, Op

DP = ProtocolDesc(ofp.OFP_VERSION)
SEED = 20250614
FLOW_CASES = 2000  # each sent as ADD, MODIFY and DELETE
GROUP_CASES = 600  # likewise
XIDS = (0, 1, 0x7FFFFFFF, 0xFFFFFFFF)

# Open vSwitch refuses an OpenFlow 1.3 set-field of in_port; taprouter writes in_port_nxm, and
# reads either back as in_port_nxm, so in_port never appears in a set-field of ours.
SETTABLE = sorted(set(FIELDS) - {"in_port"})



def bundle_add(bundle_id: int, message: bytes) -> bytes:
    """`message` inside an ONF bundle add, with the message's own xid, as os-ken builds one."""
    return wire.bundle_add_head(bundle_id, len(message), struct.unpack_from("!I", message, 4)[0]) + message

def reference_flow_mod(op: FlowOp, xid: int) -> bytes:
    msg = osken_reference.flow_mod(DP, op)
    msg.set_xid(xid)
    msg.serialize()
    return bytes(msg.buf)


def reference_group_mod(op: GroupOp, xid: int) -> bytes:
    msg = osken_reference.group_mod(DP, op)
    msg.set_xid(xid)
    msg.serialize()
    return bytes(msg.buf)


def assert_same(ours: bytes, theirs: bytes, what) -> None:
    if ours != theirs:
        at = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))
        pytest.fail(f"{what}\n first difference at byte {at} (lengths {len(ours)}, {len(theirs)})\n"
                    f" wire:   {ours.hex()}\n os-ken: {theirs.hex()}")
    # Independent of os-ken: the header's length is the message's, and messages stay 8-aligned.
    assert struct.unpack_from("!BBH", ours)[::2] == (ofp.OFP_VERSION, len(ours)), what
    assert len(ours) % 8 == 0, what


def check_flow(op: FlowOp, xid: int) -> None:
    assert_same(wire.encode_flow_mod(op, xid), reference_flow_mod(op, xid), (op, xid))


def check_group(op: GroupOp, xid: int) -> None:
    assert_same(wire.encode_group_mod(op, xid), reference_group_mod(op, xid), (op, xid))


# --- generated flows and groups ------------------------------------------------------------------

SPECIAL_PORTS = (1, 2, 0xFF, 0xFFFF, 0x10000, ofp.OFPP_MAX, ofp.OFPP_IN_PORT, ofp.OFPP_TABLE,
                 ofp.OFPP_NORMAL, ofp.OFPP_FLOOD, ofp.OFPP_ALL, OFPP_CONTROLLER, ofp.OFPP_LOCAL, ofp.OFPP_ANY)


def random_value(rng: random.Random, bits: int) -> int:
    return rng.choice([0, 1, (1 << bits) - 1, 1 << (bits - 1), rng.getrandbits(bits), rng.getrandbits(bits)])


def random_mask(rng: random.Random, bits: int) -> int:
    """A prefix mask or an arbitrary one, never full (FieldMatch makes that exact) nor zero."""
    while True:
        if rng.random() < 0.6:
            length = rng.randrange(1, bits)
            mask = ((1 << length) - 1) << (bits - length)
        else:
            mask = rng.getrandbits(bits) | (1 << rng.randrange(bits))
        if mask != (1 << bits) - 1:
            return mask


def random_field(rng: random.Random, name: str, masked: bool) -> FieldMatch:
    bits = FIELDS[name][1]
    value = random_value(rng, bits)
    return FieldMatch(name, value, random_mask(rng, bits)) if masked else FieldMatch(name, value)


def random_match(rng: random.Random) -> Match:
    count = rng.choice([0, 1, 1, 2, 2, 2, 3, 4, 5, 7, len(MATCH_FIELDS)])
    names = rng.sample(sorted(MATCH_FIELDS), count)
    return Match.of(*(random_field(rng, name, rng.random() < 0.4) for name in names))


def random_action(rng: random.Random):
    kind = rng.randrange(6)
    if kind == 0:
        port = rng.choice([rng.choice(SPECIAL_PORTS), rng.getrandbits(32)])
        return Output(port, rng.choice([0, 0xFFFF, 0xFFE5, rng.getrandbits(16)]))
    if kind == 1:
        name = rng.choice(SETTABLE)
        return SetField(name, random_value(rng, FIELDS[name][1]))
    if kind == 2:
        return DecTtl()
    if kind == 4:
        return PushVlan(rng.choice([0x8100, 0x88A8]))
    if kind == 5:
        return PopVlan()
    return ToGroup(rng.choice([0, 0xFFFFFFFF, pipeline.GROUP_MIN, rng.randrange(pipeline.GROUP_MIN,
                                                                                pipeline.GROUP_MAX + 1),
                               rng.getrandbits(32)]))


def random_actions(rng: random.Random) -> tuple:
    return tuple(random_action(rng) for _ in range(rng.choice([0, 1, 1, 1, 2, 3, 4, 6])))


def random_flow(rng: random.Random) -> Flow:
    return Flow(
        table=rng.choice([0, 1, 2, 3, 254, rng.randrange(255)]),
        priority=rng.choice([0, 1, 0xFFFF, rng.getrandbits(16)]),
        match=random_match(rng),
        actions=random_actions(rng),
        goto=rng.choice([None, None, 1, rng.randrange(255)]),
        meter=rng.choice([None, None, pipeline.SLOW_PATH_METER, 0xFFFF0000, rng.getrandbits(32)]),
        cookie=rng.choice([0, (1 << 64) - 1, pipeline.cookie(pipeline.Owner.ROUTE), rng.getrandbits(64)]))


def random_group(rng: random.Random) -> GroupSpec:
    buckets = tuple(Bucket(rng.choice([0, 1, 0xFFFF, rng.getrandbits(16)]), random_actions(rng))
                    for _ in range(rng.randint(1, 8)))
    return GroupSpec(rng.choice([GroupType.INDIRECT, GroupType.SELECT]), buckets)


def generated_flows() -> list[tuple[Flow, int]]:
    rng = random.Random(SEED)
    return [(random_flow(rng), rng.choice(XIDS + (rng.getrandbits(32),))) for _ in range(FLOW_CASES)]


def generated_groups() -> list[tuple[int, GroupSpec, int]]:
    rng = random.Random(SEED + 1)
    return [(rng.choice([pipeline.GROUP_MIN, rng.getrandbits(32)]), random_group(rng),
             rng.choice(XIDS + (rng.getrandbits(32),))) for _ in range(GROUP_CASES)]


FLOWS = generated_flows()
GROUPS = generated_groups()


def test_generated_flows_cover_every_field_action_and_instruction():
    fields = Counter((f.name, f.mask is None) for flow, _ in FLOWS for f in flow.match.fields)
    assert set(fields) == {(name, exact_) for name in MATCH_FIELDS for exact_ in (True, False)}
    assert min(fields.values()) >= 20, fields
    actions = Counter(type(a) for flow, _ in FLOWS for a in flow.actions)
    assert set(actions) == {Output, SetField, DecTtl, ToGroup, PushVlan, PopVlan}
    assert {a.name for flow, _ in FLOWS for a in flow.actions if isinstance(a, SetField)} == set(SETTABLE)
    shapes = Counter((f.meter is not None, bool(f.actions), f.goto is not None) for f, _ in FLOWS)
    assert len(shapes) == 8 and min(shapes.values()) >= 20, shapes
    assert sum(1 for f, _ in FLOWS if not f.match.fields) >= 20
    assert sum(1 for f, _ in FLOWS if len(f.match.fields) == len(MATCH_FIELDS)) >= 20
    # Match.of orders by name and os-ken by OXM number: plenty of matches where the two differ.
    assert sum(1 for f, _ in FLOWS if [x.name for x in f.match.fields]
               != sorted((x.name for x in f.match.fields), key=wire.OXM_FIELD_NUMBERS.get)) >= 100


def test_generated_groups_cover_both_types_and_one_to_eight_buckets():
    seen = Counter((spec.type, len(spec.buckets)) for _, spec, _ in GROUPS)
    assert set(seen) == {(t, n) for t in GroupType for n in range(1, 9)}, seen
    assert {type(a) for _, spec, _ in GROUPS for b in spec.buckets for a in b.actions} == {
        Output, SetField, DecTtl, ToGroup, PushVlan, PopVlan}
    assert any(not b.actions for _, spec, _ in GROUPS for b in spec.buckets)


@pytest.mark.parametrize("kind", list(Op), ids=lambda op: op.value)
def test_generated_flow_mods_byte_identical_to_os_ken(kind):
    for flow, xid in FLOWS:
        check_flow(FlowOp(kind, flow), xid)


@pytest.mark.parametrize("kind", list(Op), ids=lambda op: op.value)
def test_generated_group_mods_byte_identical_to_os_ken(kind):
    for group_id, spec, xid in GROUPS:
        check_group(GroupOp(kind, group_id, spec), xid)


# --- particular cases ------------------------------------------------------------------------------

ROUTE = Flow(2, 34, Match.of(exact("eth_type", ETH_TYPE_IPV4),
                             FieldMatch("ipv4_dst", 0xC6336400, 0xFFFFFF00)), (ToGroup(0x7A700001),),
             cookie=pipeline.cookie(pipeline.Owner.ROUTE))


def test_default_xid_is_zero():
    assert wire.encode_flow_mod(FlowOp(Op.ADD, ROUTE)) == reference_flow_mod(FlowOp(Op.ADD, ROUTE), 0)
    group = GroupOp(Op.ADD, 5, GroupSpec(GroupType.INDIRECT, (Bucket(0, (DecTtl(), Output(3))),)))
    assert wire.encode_group_mod(group) == reference_group_mod(group, 0)


def test_route_flow_mod_layout():
    """Spelled out from the OpenFlow 1.3 spec, not from os-ken."""
    buf = wire.encode_flow_mod(FlowOp(Op.ADD, ROUTE), 0x01020304)
    assert buf == bytes.fromhex(
        "04 0e 0058 01020304"                      # header: version, FLOW_MOD, length 88, xid
        "7a70000200000000 0000000000000000"        # cookie, cookie_mask
        "02 00 0000 0000 0022 ffffffff"            # table 2, ADD, idle, hard, priority 34, NO_BUFFER
        "ffffffff ffffffff 0000 0000"              # out_port ANY, out_group ANY, flags, pad
        "0001 0016"                                # ofp_match: OXM, length 22
        "80000a02 0800"                            # eth_type 0x0800
        "80001908 c6336400 ffffff00"               # ipv4_dst/mask, hasmask set
        "0000"                                     # match padding to 24
        "0004 0010 00000000"                       # apply-actions, length 16
        "0016 0008 7a700001")                      # group action


def test_oxm_numbers_are_os_kens_for_every_pipeline_field():
    assert {name: ofp.oxm_from_user_header(name) for name in FIELDS} == {
        name: wire.OXM_CLASS.get(name, wire.OFPXMC_OPENFLOW_BASIC) << 7 | wire.OXM_FIELD_NUMBERS[name]
        for name in FIELDS}


def test_every_field_in_one_match_is_in_oxm_order():
    match = Match.of(*(FieldMatch(name, 1) for name in MATCH_FIELDS))
    check_flow(FlowOp(Op.ADD, Flow(0, 1, match)), 9)
    buf = wire.encode_flow_mod(FlowOp(Op.ADD, Flow(0, 1, match)))
    numbers, offset = [], 52
    while len(numbers) < len(MATCH_FIELDS):
        header = struct.unpack_from("!I", buf, offset)[0]
        numbers.append(header >> 9 & 0x7F)
        offset += 4 + (header & 0xFF)
    assert numbers == sorted(wire.OXM_FIELD_NUMBERS[name] for name in MATCH_FIELDS)


def test_zero_mask_built_without_match_of_goes_out_as_os_ken_sends_it():
    # Match.of drops a zero-mask field; a Match built directly keeps it, and os-ken sends it masked.
    match = Match((FieldMatch("eth_type", ETH_TYPE_IPV6), FieldMatch("ipv6_dst", 0, 0)))
    for kind in Op:
        check_flow(FlowOp(kind, Flow(3, 10, match, (to_controller(),))), 1)


def test_repeated_field_built_without_match_of_keeps_the_last_as_os_ken_does():
    match = Match((FieldMatch("in_port", 1), FieldMatch("eth_dst", 5), FieldMatch("in_port", 2)))
    for kind in Op:
        check_flow(FlowOp(kind, Flow(0, 10, match, goto=1)), 1)


def test_bucket_without_actions_and_group_without_buckets():
    for kind in Op:
        check_group(GroupOp(kind, 1, GroupSpec(GroupType.SELECT, (Bucket(1, ()), Bucket(2, (Output(1),))))), 3)
        check_group(GroupOp(kind, 1, GroupSpec(GroupType.INDIRECT, ())), 3)


def test_delete_of_an_unreadable_group_uses_os_kens_default_type():
    # A group read back in a form we do not write is kept as None; os-ken cannot encode its delete.
    msg = parser.OFPGroupMod(DP, ofp.OFPGC_DELETE, group_id=0x7A700009)
    msg.set_xid(4)
    msg.serialize()
    assert wire.encode_group_mod(GroupOp(Op.DELETE, 0x7A700009, None), 4) == bytes(msg.buf)


def test_unknown_action_is_a_type_error_as_in_os_kens_reference():
    flow = Flow(0, 1, Match(), actions=("drop",))
    with pytest.raises(TypeError):
        wire.encode_flow_mod(FlowOp(Op.ADD, flow))
    with pytest.raises(TypeError):
        osken_reference.flow_mod(DP, FlowOp(Op.ADD, flow))


def test_flow_mod_parses_back_to_the_same_flow():
    for flow, xid in FLOWS[:300]:
        check_flow(FlowOp(Op.ADD, flow), xid)  # os-ken's parser can loop forever on malformed bytes
        buf = wire.encode_flow_mod(FlowOp(Op.ADD, flow), xid)
        msg = parser.OFPFlowMod.parser(DP, ofp.OFP_VERSION, ofp.OFPT_FLOW_MOD, len(buf), xid, buf)
        assert (msg.table_id, msg.priority, msg.cookie, msg.command) == (flow.table, flow.priority, flow.cookie,
                                                                         ofp.OFPFC_ADD)
        assert decode.match_from_ofp(msg.match) == flow.match
        stats = parser.OFPFlowStats(table_id=msg.table_id, priority=msg.priority, cookie=msg.cookie,
                                    match=msg.match, instructions=msg.instructions)
        assert decode.flow_from_stats(stats) == flow


# --- bundles --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [wire.BUNDLE_OPEN, wire.BUNDLE_COMMIT])
@pytest.mark.parametrize("bundle_id,xid", [(1, 0), (0xFFFFFFFF, 0x12345678)])
def test_bundle_control_byte_identical_to_os_ken(kind, bundle_id, xid):
    msg = parser.ONFBundleCtrlMsg(DP, bundle_id, kind, ofp.ONF_BF_ATOMIC | ofp.ONF_BF_ORDERED, [])
    msg.set_xid(xid)
    msg.serialize()
    assert wire.encode_bundle_control(kind, bundle_id, xid) == bytes(msg.buf)


@pytest.mark.parametrize("dst,target", [("20.1.2.0/24", 0x7A700001), ("2001:db8:7::/48", pipeline.KERNEL), ("0.0.0.0/0", 9)])
@pytest.mark.parametrize("op", [Op.ADD, Op.DELETE])
@pytest.mark.parametrize("xid", [0, 77])
def test_bundle_add_of_a_route_flow_mod_byte_identical_to_os_ken(dst, target, op, xid):
    net = ipaddress.ip_network(dst)
    inner = osken_reference.flow_mod(DP, FlowOp(op, pipeline.route_flow(pfx.from_network(net), target)))
    msg = parser.ONFBundleAddMsg(DP, 42, ofp.ONF_BF_ATOMIC | ofp.ONF_BF_ORDERED, inner, [])
    msg.set_xid(xid)
    msg.serialize()
    assert bundle_add(42, wire.encode_route(op, pfx.from_network(net), target, xid)) == bytes(msg.buf)
