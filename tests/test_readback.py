"""readback: flow-stats entries decode as os-ken's parser + decode.flow_from_stats read them, route flows fast.

Entries are built from wire.encode_flow_mod's bytes (its match and instructions are a flow-stats
entry's) behind a flow-stats head with random durations, timeouts, flags and counters, or by hand
where a Flow cannot say it (a full mask, value bits outside a mask, another OXM order).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import random
import struct

import pytest
from os_ken.ofproto import ofproto_parser
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser
from os_ken.ofproto.ofproto_protocol import ProtocolDesc

from taprouter.controller.openflow import decode, pipeline, readback, wire
from taprouter.controller.planner import baseflows, punt
from taprouter.controller.openflow.flows import (DecTtl, ETH_TYPE_IPV4, ETH_TYPE_IPV6, FIELDS, FieldMatch, Flow, MATCH_FIELDS, Match, OFPP_CONTROLLER, Output, SetField, ToGroup, exact, to_controller)
from taprouter.controller.openflow.pipeline import Owner
from taprouter.controller.openflow.ops import FlowOp, Op
from taprouter import prefix

DP = ProtocolDesc(ofp.OFP_VERSION)
SEED = 20250615
ROUTE_COOKIE = pipeline.cookie(Owner.ROUTE)
FIB4, FIB6 = int(pipeline.Table.FIB4), int(pipeline.Table.FIB6)
GIDS = (1, pipeline.GROUP_MIN, pipeline.GROUP_MAX, 0xFFFFFFFF)
_HEAD = struct.Struct("!HBxIIHHHH4xQQQ")


# --- building entries and the reference reading ------------------------------------------------

def route_flow(pk: int, target: int) -> Flow:
    """The flow the daemon writes for a prefix: target a group id, or pipeline.KERNEL (0) for the kernel."""
    return pipeline.route_flow(pk, target)


def fixed_flows() -> list[Flow]:
    return baseflows.fib_flows()


def head(length: int, table: int, priority: int, cookie: int, rng: random.Random,
         timeouts: tuple[int, int, int] | None = None) -> bytes:
    """A flow-stats head: random durations and counters; the timeouts and flags given, else random."""
    idle, hard, flags = timeouts if timeouts is not None else (
        rng.choice([0, rng.getrandbits(16)]), rng.choice([0, rng.getrandbits(16)]), rng.choice([0, rng.getrandbits(16)]))
    return _HEAD.pack(length, table, rng.getrandbits(32), rng.getrandbits(32), priority, idle, hard, flags, cookie,
                      rng.getrandbits(64), rng.getrandbits(64))


def entry(flow: Flow, rng: random.Random) -> bytes:
    """A flow-stats entry holding the flow: the flow_mod's match and instructions behind a stats head
    with the flow's own timeouts and flags."""
    body = wire.encode_flow_mod(FlowOp(Op.ADD, flow))[48:]
    return head(48 + len(body), flow.table, flow.priority, flow.cookie, rng,
                (flow.idle_timeout, flow.hard_timeout, flow.flags)) + body


def oxm(name: str, value: int, mask: int | None = None) -> bytes:
    width = FIELDS[name][1] // 8
    data = struct.pack("!I", wire.oxm_header(name, mask is not None)) + value.to_bytes(width, "big")
    return data if mask is None else data + mask.to_bytes(width, "big")


def group_instructions(gid: int) -> bytes:
    return struct.pack("!HH4xHHI", ofp.OFPIT_APPLY_ACTIONS, 16, ofp.OFPAT_GROUP, 8, gid)


PUNT_INSTRUCTIONS = (struct.pack("!HHI", ofp.OFPIT_METER, 8, pipeline.SLOW_PATH_METER)
                     + struct.pack("!HH4xHHIH6x", ofp.OFPIT_APPLY_ACTIONS, 24, ofp.OFPAT_OUTPUT, 16,
                                   OFPP_CONTROLLER, 0xFFFF))


def raw_entry(table: int, priority: int, oxms: bytes, instructions: bytes, rng: random.Random,
              cookie: int = ROUTE_COOKIE, match_type: int = ofp.OFPMT_OXM, padding: bytes | None = None) -> bytes:
    match_len = 4 + len(oxms)
    body = (struct.pack("!HH", match_type, match_len) + oxms
            + (bytes(-match_len & 7) if padding is None else padding) + instructions)
    return head(48 + len(body), table, priority, cookie, rng) + body


def reference(data: bytes) -> Flow:
    return decode.flow_from_stats(parser.OFPFlowStats.parser(data, 0))


def check(data: bytes) -> tuple[int, int] | Flow:
    """decode agrees with os-ken: the same Flow, or a route that is that Flow, or ValueError on both."""
    try:
        want = reference(data)
    except ValueError:
        with pytest.raises(ValueError):
            readback.decode(data)
        return None  # type: ignore[return-value]
    got = readback.decode(data)
    if type(got) is tuple:
        # Route flows are read without their timeouts and flags: taprouter never sets them there.
        want = dataclasses.replace(want, idle_timeout=0, hard_timeout=0, flags=0)
        assert route_flow(*got) == want, data.hex()
    else:
        assert got == want, data.hex()
    return got


def random_prefix(rng: random.Random, version: int, length: int) -> int:
    width = 32 if version == 4 else 128
    value = rng.choice([rng.getrandbits(width), (1 << width) - 1, 1 << (width - 1)])
    return prefix.pack(version, value >> (width - length) << (width - length), length)


def route_cases() -> list[tuple[int, int]]:
    rng = random.Random(SEED)
    return [(random_prefix(rng, version, length), target)
            for version, width in ((4, 32), (6, 128)) for length in range(width + 1)
            for target in (0, 0, rng.choice(GIDS), rng.randrange(pipeline.GROUP_MIN, pipeline.GROUP_MAX))]


# --- route flows ------------------------------------------------------------------------------

def test_route_flows_of_every_length_both_families_and_forms_decode_fast():
    rng = random.Random(SEED + 1)
    cases = route_cases()
    assert {(prefix.is_v6(pk), prefix.length(pk), t == 0) for pk, t in cases} == {
        (v6, n, punted) for v6, w in ((False, 32), (True, 128)) for n in range(w + 1) for punted in (False, True)}
    for pk, target in cases:
        flow = route_flow(pk, target)
        assert check(entry(flow, rng)) == (pk, target), flow


def test_route_flow_mods_the_daemon_sends_read_back_as_their_prefix_and_target():
    rng = random.Random(SEED + 11)
    for pk, target in route_cases():
        body = wire.encode_route(Op.ADD, pk, target)[48:]
        flow = route_flow(pk, target)
        assert check(head(48 + len(body), flow.table, flow.priority, flow.cookie, rng) + body) == (pk, target)


@pytest.mark.parametrize("version", [4, 6])
def test_host_and_default_routes_in_every_encoding_a_switch_may_report(version):
    rng = random.Random(SEED + 2)
    name, table, eth, width = (("ipv4_dst", FIB4, ETH_TYPE_IPV4, 32) if version == 4
                               else ("ipv6_dst", FIB6, ETH_TYPE_IPV6, 128))
    full = (1 << width) - 1
    host = rng.getrandbits(width)
    eth_oxm = oxm("eth_type", eth)
    for instructions, target in ((group_instructions(0x7A700005), 0x7A700005), (PUNT_INSTRUCTIONS, 0)):
        cases = [(eth_oxm + oxm(name, host), 10 + width, prefix.pack(version, host, width)),  # exact
                 (eth_oxm + oxm(name, host, full), 10 + width, prefix.pack(version, host, width)),  # full mask
                 (eth_oxm, 10, prefix.pack(version, 0, 0)),  # no field
                 (eth_oxm + oxm(name, 0, 0), 10, prefix.pack(version, 0, 0))]  # zero mask
        for oxms, priority, pk in cases:
            assert check(raw_entry(table, priority, oxms, instructions, rng)) == (pk, target)


def test_padding_and_timeouts_do_not_matter_as_to_os_ken():
    rng = random.Random(SEED + 3)
    oxms = oxm("eth_type", ETH_TYPE_IPV4) + oxm("ipv4_dst", 0x0A000000, 0xFF000000)
    data = raw_entry(FIB4, 18, oxms, group_instructions(7), rng, padding=b"\xff\xff")
    assert check(data) == (prefix.pack(4, 0x0A000000, 8), 7)
    # Pads inside the instructions and actions too.
    instructions = bytes(PUNT_INSTRUCTIONS[:12]) + b"\xee" * 4 + PUNT_INSTRUCTIONS[16:26] + b"\xee" * 6
    assert check(raw_entry(FIB4, 18, oxms, instructions, rng)) == (prefix.pack(4, 0x0A000000, 8), 0)


def _near_misses() -> dict[str, bytes]:
    rng = random.Random(SEED + 4)
    v4 = prefix.pack(4, 0xC6336400, 24)
    v6 = prefix.pack(6, 0x20010DB8 << 96, 32)
    group, punted = route_flow(v4, 0x7A700001), route_flow(v6, 0)

    def alter(flow: Flow, **changes) -> bytes:
        return entry(Flow(**{**flow.__dict__, **changes}), rng)

    eth4, eth6 = oxm("eth_type", ETH_TYPE_IPV4), oxm("eth_type", ETH_TYPE_IPV6)
    return {
        "priority one up": alter(group, priority=group.priority + 1),
        "priority one down": alter(punted, priority=punted.priority - 1),
        "default route at priority 11": alter(route_flow(prefix.pack(4, 0, 0), 9), priority=11),
        "host route at priority 41": alter(route_flow(prefix.pack(4, 1, 32), 9), priority=41),
        "extra action after group": alter(group, actions=(ToGroup(0x7A700001), DecTtl())),
        "extra action before output": alter(punted, actions=(DecTtl(), to_controller())),
        "two groups": alter(group, actions=(ToGroup(1), ToGroup(2))),
        "output instead of group": alter(group, actions=(Output(1),)),
        "group 0": alter(group, actions=(ToGroup(0),)),
        "wrong meter": alter(punted, meter=pipeline.PUNT_METER),
        "punt without meter": alter(punted, meter=None),
        "group with meter": alter(group, meter=pipeline.SLOW_PATH_METER),
        "output max_len 0": alter(punted, actions=(Output(OFPP_CONTROLLER, 0),)),
        "output to port 1": alter(punted, actions=(Output(1, 0xFFFF),)),
        "goto after group": alter(group, goto=3),
        "goto after punt": alter(punted, goto=1),
        "no instructions": alter(group, actions=()),
        "pipeline cookie": alter(group, cookie=pipeline.cookie(Owner.PIPELINE)),
        "foreign cookie": alter(group, cookie=0),
        "v4 route in the IPv6 table": alter(group, table=FIB6),
        "v6 route in the IPv4 table": alter(punted, table=FIB4),
        "extra match field": alter(group, match=Match.of(*group.match.fields, exact("ip_proto", 6))),
        "eth_type only at /24's priority": alter(group, match=Match.of(exact("eth_type", ETH_TYPE_IPV4))),
        "ipv6_dst in the IPv4 table": raw_entry(FIB4, 42, eth4 + oxm("ipv6_dst", 0x20010DB8 << 96, ((1 << 32) - 1) << 96),
                                          group_instructions(5), rng),
        "ipv6 eth_type in the IPv4 table": raw_entry(FIB4, 34, eth6 + oxm("ipv4_dst", 0xC6336400, 0xFFFFFF00),
                                              group_instructions(5), rng),
        "value bits outside mask v4": raw_entry(FIB4, 34, eth4 + oxm("ipv4_dst", 0xC6336401, 0xFFFFFF00),
                                                group_instructions(5), rng),
        "value bits outside mask v6": raw_entry(FIB6, 42, eth6 + oxm("ipv6_dst", 0x20010DB8 << 96 | 1,
                                                                  ((1 << 32) - 1) << 96), PUNT_INSTRUCTIONS, rng),
        "value bits under a zero mask": raw_entry(FIB4, 10, eth4 + oxm("ipv4_dst", 1, 0), group_instructions(5), rng),
        "mask not a prefix": raw_entry(FIB4, 34, eth4 + oxm("ipv4_dst", 0xC6006400, 0xFF00FF00),
                                       group_instructions(5), rng),
        "eth_type masked": raw_entry(FIB4, 34, struct.pack("!IHH", wire.oxm_header("eth_type", True), 0x0800, 0xFFFF)
                                     + oxm("ipv4_dst", 0xC6336400, 0xFFFFFF00), group_instructions(5), rng),
        # Legal OpenFlow, and the same Flow, but not the order os-ken and Open vSwitch write.
        "ipv4_dst before eth_type": raw_entry(FIB4, 34, oxm("ipv4_dst", 0xC6336400, 0xFFFFFF00) + eth4,
                                              group_instructions(5), rng),
        "apply-actions before meter": raw_entry(FIB6, 42, eth6 + oxm("ipv6_dst", 0x20010DB8 << 96, ((1 << 32) - 1) << 96),
                                                PUNT_INSTRUCTIONS[8:] + PUNT_INSTRUCTIONS[:8], rng),
        "standard match type": raw_entry(FIB4, 34, eth4 + oxm("ipv4_dst", 0xC6336400, 0xFFFFFF00),
                                         group_instructions(5), rng, match_type=ofp.OFPMT_STANDARD),
    }


NEAR_MISSES = _near_misses()


@pytest.mark.parametrize("name", list(NEAR_MISSES))
def test_near_misses_of_a_route_flow_come_back_as_os_kens_flow(name):
    got = check(NEAR_MISSES[name])
    assert isinstance(got, Flow), got


# --- every other flow the daemon writes, and random ones ----------------------------------------

PORTS = [punt.PortView(1, 0x0E0000000001, (ipaddress.ip_interface("10.0.1.1/24"),
                                            ipaddress.ip_interface("2001:db8:1::1/64"),
                                            ipaddress.ip_interface("fe80::1/64"))),
         punt.PortView(0xFFFFFF00, 0x0E0000000002, (ipaddress.ip_interface("192.0.2.1/31"),))]


def test_punt_ingress_and_fixed_flows_read_as_os_ken_reads_them():
    rng = random.Random(SEED + 5)
    flows = sorted(baseflows.build(PORTS))
    assert {f.table for f in flows} == set(pipeline.Table) and len(flows) > 30
    for flow in flows:
        assert check(entry(flow, rng)) == flow


def random_value(rng: random.Random, bits: int) -> int:
    return rng.choice([0, 1, (1 << bits) - 1, rng.getrandbits(bits)])


def random_flow(rng: random.Random) -> Flow:
    """Like tests/test_wire.py's: any field, mask, action and instruction, with route-like values often."""
    fields = []
    for name in rng.sample(sorted(MATCH_FIELDS), rng.choice([0, 1, 2, 2, 3, 5, len(MATCH_FIELDS)])):
        bits = FIELDS[name][1]
        mask = rng.choice([None, None, ((1 << rng.randrange(1, bits)) - 1) << 1, rng.getrandbits(bits) | 1])
        fields.append(FieldMatch(name, random_value(rng, bits), mask))
    actions = []
    for _ in range(rng.choice([0, 1, 1, 2, 4])):
        kind = rng.randrange(4)
        if kind == 0:
            actions.append(Output(rng.choice([1, OFPP_CONTROLLER, rng.getrandbits(32)]), rng.choice([0, 0xFFFF])))
        elif kind == 1:
            name = rng.choice(sorted(set(FIELDS) - {"in_port"}))
            actions.append(SetField(name, random_value(rng, FIELDS[name][1])))
        else:
            actions.append(DecTtl() if kind == 2 else ToGroup(rng.choice(GIDS + (0,))))
    return Flow(table=rng.choice([0, 1, 2, 3, rng.randrange(255)]),
                priority=rng.choice([10, 34, 42, rng.getrandbits(16)]), match=Match.of(*fields),
                actions=tuple(actions), goto=rng.choice([None, None, 1, rng.randrange(255)]),
                meter=rng.choice([None, None, pipeline.SLOW_PATH_METER, rng.getrandbits(32)]),
                cookie=rng.choice([ROUTE_COOKIE, ROUTE_COOKIE, 0, rng.getrandbits(64)]))


def test_random_flows_read_as_os_ken_reads_them():
    rng = random.Random(SEED + 6)
    for _ in range(1500):
        flow = random_flow(rng)
        got = check(entry(flow, rng))
        assert (route_flow(*got) if type(got) is tuple else got) == flow


# --- what flow_from_stats or os-ken refuses -----------------------------------------------------

def _refused() -> dict[str, bytes]:
    rng = random.Random(SEED + 7)
    route = route_flow(prefix.pack(4, 0x0A000000, 8), 0)
    ours = wire.encode_flow_mod(FlowOp(Op.ADD, route))[48:]
    match = ours[:24]  # eth_type and ipv4_dst, padded

    def with_instructions(instructions: bytes, oxm_bytes: bytes | None = None) -> bytes:
        if oxm_bytes is None:
            body = match + instructions
        else:
            length = 4 + len(oxm_bytes)
            body = struct.pack("!HH", ofp.OFPMT_OXM, length) + oxm_bytes + bytes(-length & 7) + instructions
        return head(48 + len(body), 2, 18, ROUTE_COOKIE, rng) + body

    # VLANs made vlan_vid, push_vlan and pop_vlan ours; their neighbours (PCP, MPLS) are not.
    push_mpls = struct.pack("!HHH2x", ofp.OFPAT_PUSH_MPLS, 8, 0x8847)
    set_pcp = struct.pack("!HHIB7x", ofp.OFPAT_SET_FIELD, 16, ofp.OXM_OF_VLAN_PCP, 5)
    return {
        "unknown match field": with_instructions(group_instructions(5),
                                                 oxm("eth_type", ETH_TYPE_IPV4) + struct.pack("!IB", ofp.OXM_OF_VLAN_PCP, 5)),
        "write-actions": with_instructions(struct.pack("!HH4xHHI", ofp.OFPIT_WRITE_ACTIONS, 16, ofp.OFPAT_GROUP, 8, 5)),
        "clear-actions": with_instructions(struct.pack("!HH4x", ofp.OFPIT_CLEAR_ACTIONS, 8)),
        "write-metadata": with_instructions(struct.pack("!HH4xQQ", ofp.OFPIT_WRITE_METADATA, 24, 1, 1)),
        "push-mpls action": with_instructions(struct.pack("!HH4x", ofp.OFPIT_APPLY_ACTIONS, 16) + push_mpls),
        "set-field of vlan_pcp": with_instructions(struct.pack("!HH4x", ofp.OFPIT_APPLY_ACTIONS, 24) + set_pcp),
    }


@pytest.mark.parametrize("name", list(_refused()))
def test_what_flow_from_stats_refuses_raises_value_error_on_both(name):
    data = _refused()[name]
    with pytest.raises(ValueError):
        reference(data)
    with pytest.raises(ValueError):
        readback.decode(data)


def _malformed() -> dict[str, bytes]:
    rng = random.Random(SEED + 8)
    good = entry(route_flow(prefix.pack(4, 0x0A000000, 8), 5), rng)  # 48 + 24 match + 16 instructions
    assert len(good) == 88

    def body(instructions: bytes) -> bytes:
        return struct.pack("!H", 72 + len(instructions)) + good[2:72] + instructions

    return {
        "instruction of length 0": body(struct.pack("!HH4x", ofp.OFPIT_APPLY_ACTIONS, 0)),
        "action of length 0": body(struct.pack("!HH4xHHI", ofp.OFPIT_APPLY_ACTIONS, 16, ofp.OFPAT_GROUP, 0, 5)),
        "unknown instruction type": body(struct.pack("!HH4x", 99, 8)),
        # os-ken steps over these by its own fixed sizes (8), lands on a zero length and loops.
        "action os-ken reads shorter than its length": body(
            struct.pack("!HH4xHH4xHH4x", ofp.OFPIT_APPLY_ACTIONS, 24, ofp.OFPAT_DEC_MPLS_TTL, 16,
                        ofp.OFPAT_EXPERIMENTER, 0)),
        "instruction os-ken reads shorter than its length": body(
            struct.pack("!HHB3xHH4x", ofp.OFPIT_GOTO_TABLE, 16, 3, ofp.OFPIT_APPLY_ACTIONS, 0)),
        "unknown action type": body(struct.pack("!HH4xHH4x", ofp.OFPIT_APPLY_ACTIONS, 16, 99, 8)),
        "instruction past the end": body(struct.pack("!HH4xHHI", ofp.OFPIT_APPLY_ACTIONS, 32, ofp.OFPAT_GROUP, 8, 5)),
        "entry longer than its bytes": struct.pack("!H", 200) + good[2:],
        "route entry cut short": good[:80],
        "shorter than a head": good[:40],
        "empty": b"",
    }


@pytest.mark.parametrize("name", list(_malformed()))
def test_entries_os_ken_cannot_parse_raise_value_error_not_hang(name):
    # Not parsed with os-ken here: on zero lengths its parser loops forever.
    with pytest.raises(ValueError):
        readback.decode(_malformed()[name])


def test_decode_all_splits_routes_flows_and_refused_entries():
    rng = random.Random(SEED + 9)
    routes = {pk: target for pk, target in route_cases()[::7]}
    others = sorted(punt.plan(PORTS))[:5] + [NEAR_MISSES["goto after group"]]
    entries = ([readback.RawFlowStats(entry(route_flow(pk, t), rng)) for pk, t in routes.items()]
               + [readback.RawFlowStats(d if isinstance(d, bytes) else entry(d, rng)) for d in others]
               + [readback.RawFlowStats(d) for d in _refused().values()] + [readback.RawFlowStats(b"")])
    rng.shuffle(entries)
    got_routes, got_flows, bad = readback.decode_all(entries)
    assert got_routes == routes
    assert sorted(got_flows) == sorted(reference(d if isinstance(d, bytes) else entry(d, rng)) for d in others)
    # An empty block holds no entry; each refused one comes back alone.
    assert len(bad) == len(_refused()) and all(isinstance(e, readback.RawFlowStats) for e in bad)
    # The same entries back to back in blocks, as os-ken hands over one per reply message.
    datas = [e.data for e in entries if e.data]
    blocks = [readback.RawFlowStats(b"".join(datas[i:i + 17])) for i in range(0, len(datas), 17)]
    got_routes, got_flows, bad = readback.decode_all(blocks)
    assert got_routes == routes and len(got_flows) == len(others)
    # Refused entries that frame correctly stay one each; a short tail ends its block.
    framed = [d for d in _refused().values() if len(d) >= 56 and struct.unpack_from("!H", d)[0] == len(d)]
    assert len(bad) >= len(framed)


def test_a_block_with_a_broken_length_keeps_what_comes_before():
    rng = random.Random(SEED + 11)
    good = [entry(route_flow(pk, t), rng) for pk, t in route_cases()[:10]]
    for broken in (bytes(56), struct.pack("!H", 9000) + bytes(54), struct.pack("!H", 20) + bytes(54)):
        routes, flows, bad = readback.decode_all([readback.RawFlowStats(b"".join(good) + broken + good[0])])
        assert len(routes) == len({pk for pk, _ in route_cases()[:10]}) and not flows
        assert len(bad) == 1 and bad[0].data == broken + good[0]


# --- os-ken's reply parsing ---------------------------------------------------------------------

def multipart_reply(entries: list[bytes], xid: int = 7) -> bytearray:
    body = b"".join(entries)
    return bytearray(struct.pack("!BBHIHH4x", ofp.OFP_VERSION, ofp.OFPT_MULTIPART_REPLY, 16 + len(body), xid,
                                 ofp.OFPMP_FLOW, 0) + body)  # os-ken receives into a bytearray


def parse_reply(buf: bytearray):
    return ofproto_parser.msg(DP, ofp.OFP_VERSION, ofp.OFPT_MULTIPART_REPLY, len(buf), 7, buf)


def test_install_makes_os_ken_hand_over_raw_entries(monkeypatch):
    rng = random.Random(SEED + 10)
    flows = [route_flow(pk, t) for pk, t in route_cases()[::40]] + sorted(punt.plan(PORTS)) + fixed_flows()
    entries = [entry(f, rng) for f in flows]
    buf = multipart_reply(entries)
    assert len(buf) < 0x10000
    original = parser.OFPFlowStatsReply.cls_stats_body_cls
    monkeypatch.setattr(parser.OFPFlowStatsReply, "cls_stats_body_cls", original)
    try:
        readback.install()
        readback.install()  # idempotent
        msg = parse_reply(buf)
        assert isinstance(msg, parser.OFPFlowStatsReply) and msg.type == ofp.OFPMP_FLOW
        # One block per message: os-ken's loop no longer runs per entry.
        assert [type(b) for b in msg.body] == [readback.RawFlowStats]
        assert msg.body[0].data == b"".join(entries) and type(msg.body[0].data) is bytes
        for data, flow in zip(entries, flows):
            got = readback.decode(data)
            assert (route_flow(*got) if type(got) is tuple else got) == flow
        routes, others, bad = readback.decode_all(msg.body)
        assert len(routes) + len(others) == len(flows) and not bad
        assert sorted(list(routes.items())) == sorted({pk: t for pk, t in route_cases()[::40]}.items())
        # A zero entry length, which would have os-ken's own loop spin forever, ends the block.
        broken = multipart_reply(entries[:1] + [bytes(56)])
        routes, others, bad = readback.decode_all(parse_reply(broken).body)
        assert len(routes) + len(others) == 1 and len(bad) == 1
    finally:
        monkeypatch.undo()
    assert parser.OFPFlowStatsReply.cls_stats_body_cls is original is parser.OFPFlowStats
    msg = parse_reply(buf)
    assert [decode.flow_from_stats(b) for b in msg.body] == flows
