"""decode and the PacketOut: flows surviving a trip over the wire and back, and PacketOut byte-identical
to os-ken."""

from __future__ import annotations

import random
import struct
from ipaddress import IPv4Network, IPv6Network, ip_interface

import pytest
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser
from os_ken.ofproto.ofproto_protocol import ProtocolDesc

import osken_reference
from taprouter.controller.openflow import decode, wire
from taprouter.controller.session.switch import read_back_requests
from taprouter.controller.openflow import pipeline
from taprouter.controller.openflow.flows import (DecTtl, ETH_TYPE_IPV4, ETH_TYPE_IPV6, FieldMatch, Flow, Match, Output, SetField, ToGroup, exact, prefix_match, to_controller)
from taprouter.mac import mac_to_int
from taprouter.controller.planner.punt import PortView, plan
from taprouter.controller.openflow.ops import FlowOp, Op

DP = ProtocolDesc(ofp.OFP_VERSION)
OURS = pipeline.cookie(pipeline.Owner.PORT)
MAX_DATA = 0xFFFF - 40  # an OpenFlow message is at most 65535 bytes; PacketOut's header is 40


def reference_packet_out(port: int, data: bytes, xid: int) -> bytes:
    msg = parser.OFPPacketOut(DP, buffer_id=ofp.OFP_NO_BUFFER, in_port=ofp.OFPP_CONTROLLER,
                              actions=[parser.OFPActionOutput(port, 0)], data=data)
    msg.set_xid(xid)
    msg.serialize()
    return bytes(msg.buf)


def packet_out_cases() -> list[tuple[int, bytes, int]]:
    rng = random.Random(20240613)
    special_ports = [1, 2, 0xFFFF, 0x10000, ofp.OFPP_MAX, ofp.OFPP_IN_PORT, ofp.OFPP_TABLE, ofp.OFPP_NORMAL,
                     ofp.OFPP_FLOOD, ofp.OFPP_ALL, ofp.OFPP_CONTROLLER, ofp.OFPP_LOCAL, ofp.OFPP_ANY]
    lengths = [0, 1, 13, 14, 60, 64, 1500, 1514, 1518, 9000, 9014, MAX_DATA]
    xids = [0, 1, 0xFFFFFFFF, 0x80000000]
    cases = [(p, rng.randbytes(n), rng.choice(xids)) for p, n in zip(special_ports, lengths * 2)]
    cases += [(1, b"", 0), (ofp.OFPP_MAX, bytes(9000), 0xFFFFFFFF)]
    for _ in range(300):
        cases.append((rng.randrange(1, 1 << 32), rng.randbytes(rng.choice([rng.randrange(0, 2000),
                                                                             rng.randrange(0, 9015)])),
                      rng.randrange(0, 1 << 32)))
    return cases


def test_packet_out_byte_identical_to_os_ken():
    cases = packet_out_cases()
    assert {len(d) for _, d, _ in cases} >= {0, 9000, MAX_DATA}
    for port, data, xid in cases:
        assert wire.packet_out(port, data, xid) == reference_packet_out(port, data, xid), (port, len(data), xid)


def test_packet_out_default_xid_is_zero():
    assert wire.packet_out(3, b"\x01" * 60) == reference_packet_out(3, b"\x01" * 60, 0)


def test_packet_out_parses_back_in_os_ken():
    data = bytes(range(256)) * 4
    buf = wire.packet_out(42, data, 77)
    version, msg_type, msg_len, xid = struct.unpack_from("!BBHI", buf)
    assert (version, msg_type, msg_len, xid) == (ofp.OFP_VERSION, ofp.OFPT_PACKET_OUT, len(buf), 77)
    # os-ken's OFPPacketOut.parser cannot build the message (its __init__ asserts in_port), so read
    # the body by hand and the action with os-ken's own action parser.
    buffer_id, in_port, actions_len = struct.unpack_from(ofp.OFP_PACKET_OUT_PACK_STR, buf, ofp.OFP_HEADER_SIZE)
    assert (buffer_id, in_port, actions_len) == (ofp.OFP_NO_BUFFER, ofp.OFPP_CONTROLLER, 16)
    action = parser.OFPAction.parser(buf, ofp.OFP_PACKET_OUT_SIZE)
    assert isinstance(action, parser.OFPActionOutput)
    assert (action.port, action.max_len) == (42, 0)
    assert buf[ofp.OFP_PACKET_OUT_SIZE + actions_len:] == data


def test_packet_out_refuses_data_longer_than_an_openflow_message():
    with pytest.raises(struct.error):
        wire.packet_out(1, bytes(MAX_DATA + 1))


# --- flows over the wire and back ----------------------------------------------------------------

PORTS = (
    PortView(1, mac_to_int("0e:00:00:00:01:01"), (ip_interface("10.0.1.1/24"), ip_interface("2001:db8:1::1/64"))),
    PortView(2, mac_to_int("0e:00:00:00:02:02"), (ip_interface("10.0.2.1/30"), ip_interface("fe80::1/64"))),
    PortView(0xFFFFFF00 - 1, mac_to_int("fe:ff:ff:ff:ff:ff"), (ip_interface("192.0.2.1/32"),)),
)

# Flows beyond the punt plan, so every action, instruction and mask kind is exercised.
EXTRA = [
    Flow(table=2, priority=24 + 1000, match=Match.of(exact("eth_type", ETH_TYPE_IPV4),
                                                     prefix_match("ipv4_dst", IPv4Network("198.51.100.0/24"))),
         actions=(ToGroup(7),), cookie=OURS),
    Flow(table=3, priority=64, match=Match.of(exact("eth_type", ETH_TYPE_IPV6),
                                              prefix_match("ipv6_dst", IPv6Network("2001:db8:ab00::/40"))),
         actions=(SetField("eth_src", mac_to_int("0e:00:00:00:01:01")),
                  SetField("eth_dst", mac_to_int("02:11:22:33:44:55")), DecTtl(), Output(4, 0)),
         cookie=OURS | 0xABCDEF),
    Flow(table=1, priority=300, match=Match.of(exact("eth_type", 0x0806), exact("arp_tpa", 0x0A000101)),
         actions=(to_controller(),), meter=1, cookie=OURS),
    Flow(table=0, priority=90, match=Match.of(exact("in_port", 5),
                                              FieldMatch("eth_dst", 0x010000000000, 0x010000000000)),
         goto=1, meter=0xFFFF0000, cookie=OURS),
    Flow(table=0, priority=0, match=Match(), actions=(), cookie=OURS),
    Flow(table=254, priority=0xFFFF, match=Match.of(exact("eth_src", 0xFFFFFFFFFFFF)),
         actions=(Output(1), Output(2), ToGroup(0xFFFFFF00)), goto=None, cookie=(1 << 64) - 1),
]

ALL_FLOWS = sorted(plan(PORTS)) + EXTRA


def flow_id(flow: Flow) -> str:
    return f"t{flow.table}-p{flow.priority}-" + "-".join(f.name for f in flow.match.fields)


def serialized(op: FlowOp, xid: int = 99) -> bytes:
    return osken_reference.serialized(osken_reference.flow_mod(DP, op), xid)


def parse_flow_mod(buf: bytes) -> parser.OFPFlowMod:
    version, msg_type, msg_len, xid = struct.unpack_from("!BBHI", buf)
    assert (version, msg_type, msg_len) == (ofp.OFP_VERSION, ofp.OFPT_FLOW_MOD, len(buf))
    return parser.OFPFlowMod.parser(DP, version, msg_type, msg_len, xid, buf)


def as_flow_stats(flow_mod_buf: bytes, table_id: int, priority: int, cookie: int) -> bytes:
    """The flow-stats entry a switch would send back for this flow_mod, built from its wire bytes.

    A flow_mod's match and instructions start at byte 48, as a flow-stats entry's do,
    so the rest of the flow_mod is copied verbatim behind a flow-stats header.
    """
    tail = flow_mod_buf[ofp.OFP_FLOW_MOD_SIZE - ofp.OFP_MATCH_SIZE:]
    length = ofp.OFP_FLOW_STATS_0_SIZE + len(tail)
    head = struct.pack(ofp.OFP_FLOW_STATS_0_PACK_STR, length, table_id, 12, 345, priority, 0, 0, 0, cookie,
                       1000, 64000)
    return head + tail


@pytest.mark.parametrize("flow", ALL_FLOWS, ids=flow_id)
def test_flow_round_trips_through_flow_stats_bytes(flow):
    buf = serialized(FlowOp(Op.ADD, flow))
    stats = parser.OFPFlowStats.parser(as_flow_stats(buf, flow.table, flow.priority, flow.cookie), 0)
    assert decode.flow_from_stats(stats) == flow


@pytest.mark.parametrize("flow", ALL_FLOWS, ids=flow_id)
def test_add_flow_mod_parses_back_to_the_same_flow(flow):
    msg = parse_flow_mod(serialized(FlowOp(Op.ADD, flow)))
    assert msg.command == ofp.OFPFC_ADD
    assert (msg.table_id, msg.priority, msg.cookie, msg.cookie_mask) == (flow.table, flow.priority, flow.cookie, 0)
    assert msg.buffer_id == ofp.OFP_NO_BUFFER
    stats = parser.OFPFlowStats(table_id=msg.table_id, priority=msg.priority, cookie=msg.cookie,
                                match=msg.match, instructions=msg.instructions)
    assert decode.flow_from_stats(stats) == flow


def test_meter_instruction_comes_first():
    # The order OpenFlow 1.3 executes them in, which is also the order a switch reports them back in.
    flow = EXTRA[2]
    types = [type(i) for i in parse_flow_mod(serialized(FlowOp(Op.ADD, flow))).instructions]
    assert types == [parser.OFPInstructionMeter, parser.OFPInstructionActions]


def test_modify_is_strict_and_carries_instructions():
    flow = EXTRA[1]
    msg = parse_flow_mod(serialized(FlowOp(Op.MODIFY, flow)))
    assert msg.command == ofp.OFPFC_MODIFY_STRICT
    assert msg.cookie_mask == 0
    stats = parser.OFPFlowStats(table_id=msg.table_id, priority=msg.priority, cookie=msg.cookie,
                                match=msg.match, instructions=msg.instructions)
    assert decode.flow_from_stats(stats) == flow


def test_delete_is_strict_only_ours_and_has_no_instructions():
    flow = EXTRA[0]
    msg = parse_flow_mod(serialized(FlowOp(Op.DELETE, flow)))
    assert msg.command == ofp.OFPFC_DELETE_STRICT
    assert (msg.cookie, msg.cookie_mask) == (flow.cookie, pipeline.COOKIE_MASK)
    assert (msg.out_port, msg.out_group) == (ofp.OFPP_ANY, ofp.OFPG_ANY)
    assert (msg.table_id, msg.priority) == (flow.table, flow.priority)
    assert msg.instructions == []
    assert decode.match_from_ofp(msg.match) == flow.match


def test_flow_stats_request_asks_only_for_our_cookie():
    msg = read_back_requests(DP)[-1]  # the flow-stats request comes last
    msg.set_xid(5)
    msg.serialize()
    buf = bytes(msg.buf)
    # header 8, multipart 8, then table, pad, out_port, out_group, pad, cookie, cookie_mask.
    table_id, out_port, out_group, cookie, cookie_mask = struct.unpack_from("!B3xII4xQQ", buf, 16)
    assert struct.unpack_from("!BBH", buf) == (ofp.OFP_VERSION, ofp.OFPT_MULTIPART_REQUEST, len(buf))
    assert struct.unpack_from("!H", buf, 8) == (ofp.OFPMP_FLOW,)
    assert (table_id, out_port, out_group) == (ofp.OFPTT_ALL, ofp.OFPP_ANY, ofp.OFPG_ANY)
    assert (cookie, cookie_mask) == (pipeline.COOKIE_MAGIC, pipeline.COOKIE_MASK)
    assert pipeline.is_ours(cookie) and not pipeline.is_ours(0)


def _stats(match: parser.OFPMatch, instructions: list) -> parser.OFPFlowStats:
    return parser.OFPFlowStats(table_id=0, priority=1, cookie=OURS, match=match, instructions=instructions)


APPLY = ofp.OFPIT_APPLY_ACTIONS


@pytest.mark.parametrize("stats", [
    _stats(parser.OFPMatch(vlan_vid=0x1005, vlan_pcp=3), []),  # vlan_vid is ours (VLANs), vlan_pcp is not
    _stats(parser.OFPMatch(tcp_flags=2, ip_proto=6, eth_type=ETH_TYPE_IPV4), []),
    _stats(parser.OFPMatch(), [parser.OFPInstructionActions(ofp.OFPIT_WRITE_ACTIONS,
                                                            [parser.OFPActionOutput(1, 0)])]),
    _stats(parser.OFPMatch(), [parser.OFPInstructionActions(ofp.OFPIT_CLEAR_ACTIONS, [])]),
    _stats(parser.OFPMatch(), [parser.OFPInstructionActions(APPLY, [parser.OFPActionPushMpls(0x8847)])]),
    _stats(parser.OFPMatch(), [parser.OFPInstructionWriteMetadata(1, 1)]),
], ids=["vlan-pcp-match", "tcp-flags-match", "write-actions", "clear-actions", "push-mpls", "metadata"])
def test_flows_taprouter_cannot_express_raise_value_error(stats):
    with pytest.raises(ValueError):
        decode.flow_from_stats(stats)


def test_set_field_taprouter_cannot_express_raises_value_error():
    stats = _stats(parser.OFPMatch(), [parser.OFPInstructionActions(APPLY, [parser.OFPActionSetField(vlan_pcp=5)])])
    with pytest.raises(ValueError):
        decode.flow_from_stats(stats)


def test_match_conversion_is_exact_for_every_kind():
    match = Match.of(exact("in_port", 0xFFFFFF00 - 1), exact("eth_dst", 0x0123456789AB),
                     exact("eth_type", ETH_TYPE_IPV6), exact("ip_proto", 58), exact("icmpv6_type", 135),
                     prefix_match("ipv6_dst", IPv6Network("ff02::1:ff00:0/104")))
    ofp_match = osken_reference.match_to_ofp(match)
    assert ofp_match["eth_dst"] == "01:23:45:67:89:ab"
    assert ofp_match["ipv6_dst"] == ("ff02::1:ff00:0", "ffff:ffff:ffff:ffff:ffff:ffff:ff00:0")
    assert decode.match_from_ofp(ofp_match) == match


@pytest.mark.parametrize("field", [prefix_match("ipv4_dst", IPv4Network("192.0.2.9/32")),
                                   prefix_match("ipv6_dst", IPv6Network("2001:db8::9/128")),
                                   FieldMatch("eth_dst", 0x0E0000000101, 0xFFFFFFFFFFFF)],
                         ids=["ipv4-host", "ipv6-host", "mac-full-mask"])
def test_full_mask_goes_on_the_wire_as_exact(field):
    # A switch reports a full-mask field as exact; the flow read back must equal the one planned.
    eth_type = ETH_TYPE_IPV6 if field.name == "ipv6_dst" else ETH_TYPE_IPV4
    match = Match.of(exact("eth_type", eth_type), field)
    buf = bytearray()
    osken_reference.match_to_ofp(match).serialize(buf, 0)
    parsed = parser.OFPMatch.parser(bytes(buf), 0)
    assert not isinstance(parsed[field.name], tuple)
    assert decode.match_from_ofp(parsed) == Match.of(exact("eth_type", eth_type), exact(field.name, field.value))


def test_zero_length_prefix_is_no_match_on_the_field():
    default = Match.of(exact("eth_type", ETH_TYPE_IPV4), prefix_match("ipv4_dst", IPv4Network("0.0.0.0/0")))
    assert default == Match.of(exact("eth_type", ETH_TYPE_IPV4))
