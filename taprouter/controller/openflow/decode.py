"""Reads what a switch sends back into typed values: flows, groups and meters from os-ken's stats
objects, and PacketIns straight from their bytes."""

from __future__ import annotations

import struct

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from .flows import (FIELDS, Action, DecTtl, FieldMatch, Flow, Match, Output, PopVlan, PushVlan, SetField, ToGroup,
                    from_text)
from .groups import Bucket, GroupSpec, GroupType
from .meters import MeterSpec
from .wire import METER_FLAGS, METER_FLAGS_KBPS


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


def action_from_ofp(action) -> Action:
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
    if isinstance(action, parser.OFPActionPushVlan):
        return PushVlan(action.ethertype)
    if isinstance(action, parser.OFPActionPopVlan):
        return PopVlan()
    raise ValueError(f"action {action!r} is not one taprouter installs")


def flow_from_stats(stats: parser.OFPFlowStats) -> Flow:
    """Read a flow back from a flow-stats reply; raises ValueError for flows we cannot express."""
    actions: list[Action] = []
    goto = meter = None
    for inst in stats.instructions:
        if isinstance(inst, parser.OFPInstructionActions) and inst.type == ofp.OFPIT_APPLY_ACTIONS:
            actions.extend(action_from_ofp(a) for a in inst.actions)
        elif isinstance(inst, parser.OFPInstructionGotoTable):
            goto = inst.table_id
        elif isinstance(inst, parser.OFPInstructionMeter):
            meter = inst.meter_id
        else:
            raise ValueError(f"instruction {inst!r} is not one taprouter installs")
    return Flow(table=stats.table_id, priority=stats.priority, match=match_from_ofp(stats.match),
                actions=tuple(actions), goto=goto, meter=meter, cookie=stats.cookie,
                idle_timeout=getattr(stats, "idle_timeout", None) or 0,
                hard_timeout=getattr(stats, "hard_timeout", None) or 0, flags=getattr(stats, "flags", None) or 0)


_GROUP_TYPES = {ofp.OFPGT_INDIRECT: GroupType.INDIRECT, ofp.OFPGT_SELECT: GroupType.SELECT}


def group_from_desc(stats) -> GroupSpec:
    """A group read back from a group-desc reply; raises ValueError for groups we cannot express.
    Select buckets are sorted, as the planner writes them."""
    kind = _GROUP_TYPES.get(stats.type)
    if kind is None:
        raise ValueError(f"group type {stats.type} is not one taprouter installs")
    buckets = tuple(Bucket(b.weight, tuple(action_from_ofp(a) for a in b.actions)) for b in stats.buckets)
    return GroupSpec(kind, buckets if kind is GroupType.INDIRECT else tuple(sorted(buckets)))


def meter_from_stats(stats) -> MeterSpec | None:
    """A meter read back from a meter-config reply; None for one not in the form taprouter writes."""
    bands = stats.bands
    if len(bands) != 1 or not isinstance(bands[0], parser.OFPMeterBandDrop) or \
            stats.flags not in (METER_FLAGS, METER_FLAGS_KBPS):
        return None
    return MeterSpec(bands[0].rate, bands[0].burst_size, stats.flags == METER_FLAGS_KBPS)


# --- PacketIn ------------------------------------------------------------------------------------
# Every frame for the kernel arrives as a PacketIn: two struct calls here, where os-ken's parser
# builds an object tree (its match alone costs tens of microseconds).

_HEAD = struct.Struct("!BBHIIHBBQHH")  # ofp_header, buffer_id, total_len, reason, table_id, cookie, match
_OXM = struct.Struct("!I")
_IN_PORT = ofp.OXM_OF_IN_PORT  # class OPENFLOW_BASIC, field 0, no mask, 4 bytes
_MATCH_AT = 24  # the ofp_match within an OFPT_PACKET_IN


def packet_in(buf) -> tuple[int, bytes, int] | None:
    """(ingress port, frame, reason) of one PacketIn message, or None if it is not in the expected
    form. The reason is OpenFlow's: OFPR_ACTION for a punt, OFPR_INVALID_TTL for a TTL that ran out."""
    if len(buf) < _HEAD.size:
        return None
    (_version, kind, length, _xid, _buffer_id, total_len, reason, _table, _cookie, match_type,
     match_len) = _HEAD.unpack_from(buf, 0)
    if kind != ofp.OFPT_PACKET_IN or match_type != ofp.OFPMT_OXM or match_len < 4 or length > len(buf):
        return None
    end = _MATCH_AT + match_len
    pos = _MATCH_AT + 4
    in_port = None
    while pos + 4 <= end:
        header = _OXM.unpack_from(buf, pos)[0]
        if header == _IN_PORT and pos + 8 <= end:
            in_port = _OXM.unpack_from(buf, pos + 4)[0]
            break
        pos += 4 + (header & 0xFF)
    if in_port is None:
        return None
    start = _MATCH_AT + (match_len + 7) // 8 * 8 + 2  # the match padded to 8, then 2 bytes of pad
    if start > length:
        return None
    return in_port, bytes(buf[start:min(length, start + total_len)]), reason
