"""Converts typed flows to os-ken OpenFlow 1.3 messages and back, and encodes PacketOut fast."""

from __future__ import annotations

import struct

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from .fib import Bucket, GroupSpec, GroupType
from .flows import (FIELDS, Action, DecTtl, FieldMatch, Flow, Match, Output, SetField, ToGroup,
                    from_text, to_text)
from .pipeline import COOKIE_MASK, COOKIE_MAGIC
from .reconcile import FlowOp, GroupOp, Op


def match_to_ofp(match: Match) -> parser.OFPMatch:
    kwargs = {}
    for f in match.fields:
        value = to_text(f.name, f.value)
        kwargs[f.name] = value if f.mask is None else (value, to_text(f.name, f.mask))
    return parser.OFPMatch(**kwargs)


def match_from_ofp(match: parser.OFPMatch) -> Match:
    fields = []
    for name, value in match.items():
        if name not in FIELDS:
            raise ValueError(f"field {name} is not part of taprouter's pipeline")
        if isinstance(value, tuple):
            fields.append(FieldMatch(name, from_text(name, value[0]), from_text(name, value[1])))
        else:
            fields.append(FieldMatch(name, from_text(name, value)))
    return Match.of(*fields)


def _action_to_ofp(action: Action):
    if isinstance(action, Output):
        return parser.OFPActionOutput(action.port, action.max_len)
    if isinstance(action, SetField):
        return parser.OFPActionSetField(**{action.name: to_text(action.name, action.value)})
    if isinstance(action, DecTtl):
        return parser.OFPActionDecNwTtl()
    if isinstance(action, ToGroup):
        return parser.OFPActionGroup(action.group_id)
    raise TypeError(f"unknown action {action!r}")


def _action_from_ofp(action) -> Action:
    if isinstance(action, parser.OFPActionOutput):
        return Output(action.port, action.max_len)
    if isinstance(action, parser.OFPActionSetField):
        if action.key == "in_port":  # how a switch may report the in_port_nxm we wrote
            return SetField("in_port_nxm", int(action.value))
        if action.key not in FIELDS:
            raise ValueError(f"set-field of {action.key} is not one taprouter installs")
        return SetField(action.key, from_text(action.key, action.value))
    if isinstance(action, parser.OFPActionDecNwTtl):
        return DecTtl()
    if isinstance(action, parser.OFPActionGroup):
        return ToGroup(action.group_id)
    raise ValueError(f"action {action!r} is not one taprouter installs")


def instructions_to_ofp(flow: Flow) -> list:
    instructions = []
    if flow.meter is not None:
        instructions.append(parser.OFPInstructionMeter(flow.meter, ofp.OFPIT_METER))
    if flow.actions:
        instructions.append(parser.OFPInstructionActions(
            ofp.OFPIT_APPLY_ACTIONS, [_action_to_ofp(a) for a in flow.actions]))
    if flow.goto is not None:
        instructions.append(parser.OFPInstructionGotoTable(flow.goto))
    return instructions


_COMMANDS = {Op.ADD: ofp.OFPFC_ADD, Op.MODIFY: ofp.OFPFC_MODIFY_STRICT, Op.DELETE: ofp.OFPFC_DELETE_STRICT}


def flow_mod(datapath, op: FlowOp) -> parser.OFPFlowMod:
    flow = op.flow
    return parser.OFPFlowMod(
        datapath, cookie=flow.cookie, cookie_mask=COOKIE_MASK if op.op is Op.DELETE else 0,
        table_id=flow.table, command=_COMMANDS[op.op], priority=flow.priority,
        buffer_id=ofp.OFP_NO_BUFFER, out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY,
        flags=0,
        match=match_to_ofp(flow.match),
        instructions=[] if op.op is Op.DELETE else instructions_to_ofp(flow))


def flow_from_stats(stats: parser.OFPFlowStats) -> Flow:
    """Read a flow back from a flow-stats reply; raises ValueError for flows we cannot express."""
    actions: list[Action] = []
    goto = meter = None
    for inst in stats.instructions:
        if isinstance(inst, parser.OFPInstructionActions) and inst.type == ofp.OFPIT_APPLY_ACTIONS:
            actions.extend(_action_from_ofp(a) for a in inst.actions)
        elif isinstance(inst, parser.OFPInstructionGotoTable):
            goto = inst.table_id
        elif isinstance(inst, parser.OFPInstructionMeter):
            meter = inst.meter_id
        else:
            raise ValueError(f"instruction {inst!r} is not one taprouter installs")
    return Flow(table=stats.table_id, priority=stats.priority, match=match_from_ofp(stats.match),
                actions=tuple(actions), goto=goto, meter=meter, cookie=stats.cookie)


def flow_stats_request(datapath) -> parser.OFPFlowStatsRequest:
    """Asks only for taprouter's flows, by cookie."""
    return parser.OFPFlowStatsRequest(datapath, 0, ofp.OFPTT_ALL, ofp.OFPP_ANY, ofp.OFPG_ANY,
                                      COOKIE_MAGIC, COOKIE_MASK, parser.OFPMatch())


_GROUP_TYPES = {GroupType.INDIRECT: ofp.OFPGT_INDIRECT, GroupType.SELECT: ofp.OFPGT_SELECT}
_GROUP_COMMANDS = {Op.ADD: ofp.OFPGC_ADD, Op.MODIFY: ofp.OFPGC_MODIFY, Op.DELETE: ofp.OFPGC_DELETE}


def group_mod(datapath, op: GroupOp) -> parser.OFPGroupMod:
    spec: GroupSpec = op.spec
    buckets = [] if op.op is Op.DELETE else [
        parser.OFPBucket(b.weight, ofp.OFPP_ANY, ofp.OFPG_ANY, [_action_to_ofp(a) for a in b.actions])
        for b in spec.buckets]
    return parser.OFPGroupMod(datapath, _GROUP_COMMANDS[op.op], _GROUP_TYPES[spec.type], op.group_id,
                              buckets)


def group_from_desc(stats) -> GroupSpec:
    types = {v: k for k, v in _GROUP_TYPES.items()}
    if stats.type not in types:
        raise ValueError(f"group type {stats.type} is not one taprouter installs")
    buckets = tuple(Bucket(b.weight, tuple(_action_from_ofp(a) for a in b.actions)) for b in stats.buckets)
    return GroupSpec(types[stats.type], buckets if stats.type == ofp.OFPGT_INDIRECT else tuple(sorted(buckets)))


def group_desc_request(datapath) -> parser.OFPGroupDescStatsRequest:
    return parser.OFPGroupDescStatsRequest(datapath, 0)


def read_back_requests(datapath) -> list:
    """What a switch is sent when it comes up: its config, the asynchronous messages we want,
    and the requests for its meters, groups and flows."""
    set_config = parser.OFPSetConfig(datapath, ofp.OFPC_FRAG_NORMAL, ofp.OFPCML_NO_BUFFER)
    # TTL expiry in dec_ttl must reach us (and so the kernel, for ICMP time-exceeded);
    # OpenFlow 1.3 leaves that to the asynchronous configuration.
    packet_in = 1 << ofp.OFPR_NO_MATCH | 1 << ofp.OFPR_ACTION | 1 << ofp.OFPR_INVALID_TTL
    status = 1 << ofp.OFPPR_ADD | 1 << ofp.OFPPR_DELETE | 1 << ofp.OFPPR_MODIFY
    set_async = parser.OFPSetAsync(datapath, [packet_in, 0], [status, status], [0, 0])
    return [set_config, set_async, meter_request(datapath), group_desc_request(datapath),
            flow_stats_request(datapath)]


def meter_request(datapath) -> parser.OFPMeterConfigStatsRequest:
    return parser.OFPMeterConfigStatsRequest(datapath, 0, ofp.OFPM_ALL)


_METER_FLAGS = ofp.OFPMF_PKTPS | ofp.OFPMF_BURST


def meter_spec(rate_pps: int) -> tuple:
    """What a meter of ours looks like when read back: (rate, burst, flags) of its one drop band."""
    return (rate_pps, rate_pps // 10, _METER_FLAGS)


def meter_from_stats(stats) -> tuple | None:
    bands = stats.bands
    if len(bands) != 1 or not isinstance(bands[0], parser.OFPMeterBandDrop):
        return None
    return (bands[0].rate, bands[0].burst_size, stats.flags)


def meter_mod(datapath, meter_id: int, rate_pps: int, exists: bool) -> parser.OFPMeterMod:
    return parser.OFPMeterMod(datapath, ofp.OFPMC_MODIFY if exists else ofp.OFPMC_ADD, _METER_FLAGS, meter_id,
                              [parser.OFPMeterBandDrop(rate=rate_pps, burst_size=rate_pps // 10)])


# PacketOut is the per-frame hot path of the TAP relay; os-ken's objects cost tens of
# microseconds per frame, a struct template about one. tests/ checks it byte for byte.
_PACKET_OUT = struct.Struct("!BBHIIIH6xHHIH6x")
_PACKET_OUT_LEN = _PACKET_OUT.size  # header 8 + body 16 + one output action 16


def packet_out(port: int, data: bytes, xid: int = 0) -> bytes:
    """A PacketOut sending data, unbuffered, from the controller out of one port."""
    return _PACKET_OUT.pack(
        ofp.OFP_VERSION, ofp.OFPT_PACKET_OUT, _PACKET_OUT_LEN + len(data), xid,
        ofp.OFP_NO_BUFFER, ofp.OFPP_CONTROLLER, 16,
        ofp.OFPAT_OUTPUT, 16, port, 0) + data
