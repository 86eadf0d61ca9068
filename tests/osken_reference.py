"""os-ken's own objects for what taprouter encodes with struct (openflow.wire): the reference its bytes
are tested against, and a way to read them back through os-ken's parsers."""

from __future__ import annotations

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from taprouter.controller.openflow.flows import (Action, DecTtl, Flow, Match, Output, PopVlan, PushVlan, SetField, ToGroup,
                                                 to_text)
from taprouter.controller.openflow.groups import GroupType
from taprouter.controller.openflow.ops import FlowOp, GroupOp, MeterOp, Op
from taprouter.controller.openflow.pipeline import COOKIE_MASK


def match_to_ofp(match: Match) -> parser.OFPMatch:
    kwargs = {}
    for f in match.fields:
        value = to_text(f.name, f.value)
        kwargs[f.name] = value if f.mask is None else (value, to_text(f.name, f.mask))
    return parser.OFPMatch(**kwargs)


def action_to_ofp(action: Action):
    if isinstance(action, Output):
        return parser.OFPActionOutput(action.port, action.max_len)
    if isinstance(action, SetField):
        return parser.OFPActionSetField(**{action.name: to_text(action.name, action.value)})
    if isinstance(action, DecTtl):
        return parser.OFPActionDecNwTtl()
    if isinstance(action, ToGroup):
        return parser.OFPActionGroup(action.group_id)
    if isinstance(action, PushVlan):
        return parser.OFPActionPushVlan(action.ethertype)
    if isinstance(action, PopVlan):
        return parser.OFPActionPopVlan()
    raise TypeError(f"unknown action {action!r}")


def instructions_to_ofp(flow: Flow) -> list:
    instructions = []
    if flow.meter is not None:
        instructions.append(parser.OFPInstructionMeter(flow.meter, ofp.OFPIT_METER))
    if flow.actions:
        instructions.append(parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS,
                                                         [action_to_ofp(a) for a in flow.actions]))
    if flow.goto is not None:
        instructions.append(parser.OFPInstructionGotoTable(flow.goto))
    return instructions


_COMMANDS = {Op.ADD: ofp.OFPFC_ADD, Op.MODIFY: ofp.OFPFC_MODIFY_STRICT, Op.DELETE: ofp.OFPFC_DELETE_STRICT}


def flow_mod(datapath, op: FlowOp) -> parser.OFPFlowMod:
    flow = op.flow
    return parser.OFPFlowMod(
        datapath, cookie=flow.cookie, cookie_mask=COOKIE_MASK if op.op is Op.DELETE else 0,
        table_id=flow.table, command=_COMMANDS[op.op], priority=flow.priority,
        buffer_id=ofp.OFP_NO_BUFFER, out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY, flags=0,
        match=match_to_ofp(flow.match),
        instructions=[] if op.op is Op.DELETE else instructions_to_ofp(flow))


_GROUP_TYPES = {GroupType.INDIRECT: ofp.OFPGT_INDIRECT, GroupType.SELECT: ofp.OFPGT_SELECT}
_GROUP_COMMANDS = {Op.ADD: ofp.OFPGC_ADD, Op.MODIFY: ofp.OFPGC_MODIFY, Op.DELETE: ofp.OFPGC_DELETE}


def group_mod(datapath, op: GroupOp) -> parser.OFPGroupMod:
    spec = op.spec
    buckets = [] if op.op is Op.DELETE else [
        parser.OFPBucket(b.weight, ofp.OFPP_ANY, ofp.OFPG_ANY, [action_to_ofp(a) for a in b.actions])
        for b in spec.buckets]
    return parser.OFPGroupMod(datapath, _GROUP_COMMANDS[op.op], _GROUP_TYPES[spec.type], op.group_id, buckets)


_METER_COMMANDS = {Op.ADD: ofp.OFPMC_ADD, Op.MODIFY: ofp.OFPMC_MODIFY, Op.DELETE: ofp.OFPMC_DELETE}


def meter_mod(datapath, op: MeterOp) -> parser.OFPMeterMod:
    if op.op is Op.DELETE:
        return parser.OFPMeterMod(datapath, ofp.OFPMC_DELETE, 0, op.meter_id, [])
    return parser.OFPMeterMod(datapath, _METER_COMMANDS[op.op], ofp.OFPMF_PKTPS | ofp.OFPMF_BURST, op.meter_id,
                              [parser.OFPMeterBandDrop(rate=op.spec.rate, burst_size=op.spec.burst)])


def serialized(msg, xid: int = 0) -> bytes:
    msg.set_xid(xid)
    msg.serialize()
    return bytes(msg.buf)
