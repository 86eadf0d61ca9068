"""Encodes what goes to a switch (flow, group and meter mods, bundles, PacketOuts) with struct, byte-identical
to os-ken's objects (tests/test_wire.py), at a fraction of their cost."""

from __future__ import annotations

import struct
from functools import partial

from os_ken.ofproto import ofproto_v1_3 as ofp

from ... import prefix
from ...prefix import V6_TAG
from .flows import FIELDS, Action, DecTtl, Match, Output, PopVlan, PushVlan, SetField, ToGroup
from .groups import GroupType
from .meters import MeterSpec
from .ops import FlowOp, GroupOp, MeterOp, Op
from .pipeline import COOKIE_MASK, KERNEL, route_flow

# Nothing here is cached per flow: on this CPython, hashing a frozen dataclass (a Python-level
# __hash__) costs as much as encoding it, and a full-table load sees each match once. Measured:
# an lru_cache hit on an action ~400 ns against ~120 ns to pack it; hash(Match) ~400 ns against
# ~650 ns to encode it. What is cached is per field name and per message shape, below.

# OXM class OPENFLOW_BASIC and the field numbers (OpenFlow 1.3's oxm_ofb_match_fields) of flows.FIELDS.
OFPXMC_OPENFLOW_BASIC = 0x8000
OXM_FIELD_NUMBERS: dict[str, int] = {
    "in_port": 0,
    "eth_dst": 3,
    "vlan_vid": 6,
    "eth_src": 4,
    "eth_type": 5,
    "ip_proto": 10,
    "ipv4_src": 11,
    "ipv4_dst": 12,
    "tcp_src": 13,
    "tcp_dst": 14,
    "udp_src": 15,
    "udp_dst": 16,
    "sctp_src": 17,
    "sctp_dst": 18,
    "icmpv4_type": 19,
    "arp_op": 21,
    "arp_tpa": 23,
    "ipv6_src": 26,
    "ipv6_dst": 27,
    "icmpv6_type": 29,
    "in_port_nxm": 0,  # in class NXM_OF, not OPENFLOW_BASIC
}
OXM_CLASS = {"in_port_nxm": 0x0000}
if FIELDS.keys() - OXM_FIELD_NUMBERS.keys():  # a field added to flows.FIELDS needs its number here
    raise ImportError(f"wire.OXM_FIELD_NUMBERS lacks {sorted(FIELDS.keys() - OXM_FIELD_NUMBERS.keys())}")


def oxm_header(name: str, hasmask: bool) -> int:
    """class(16) | field(7) | hasmask(1) | length(8): the length counts value and mask bytes."""
    width = FIELDS[name][1] // 8
    return (OXM_CLASS.get(name, OFPXMC_OPENFLOW_BASIC) << 16 | OXM_FIELD_NUMBERS[name] << 9 | int(hasmask) << 8
            | (2 * width if hasmask else width))


def _field_encoders(name: str):
    """(exact(value), masked(value, mask)) for one field, each giving its whole OXM TLV."""
    width = FIELDS[name][1] // 8
    exact_header, masked_header = oxm_header(name, False), oxm_header(name, True)
    code = {1: "B", 2: "H", 4: "I"}.get(width)
    if code is not None:  # one C call, header included
        return (partial(struct.Struct("!I" + code).pack, exact_header),
                partial(struct.Struct("!I" + 2 * code).pack, masked_header))
    exact_prefix, masked_prefix = struct.pack("!I", exact_header), struct.pack("!I", masked_header)
    return (lambda value: exact_prefix + value.to_bytes(width, "big"),
            lambda value, mask: masked_prefix + value.to_bytes(width, "big") + mask.to_bytes(width, "big"))


# Per field name: (OXM number, encoder). os-ken orders a match by OXM number.
_EXACT: dict[str, tuple[int, object]] = {}
_MASKED: dict[str, tuple[int, object]] = {}
for _name in FIELDS:
    _exact, _masked = _field_encoders(_name)
    _EXACT[_name] = (OXM_FIELD_NUMBERS[_name], _exact)
    _MASKED[_name] = (OXM_FIELD_NUMBERS[_name], _masked)
del _name, _exact, _masked

_PAD = tuple(bytes(n) for n in range(8))

# The OpenFlow header, the flow_mod body and the ofp_match header (type, length); the OXM TLVs follow
# padded to 8, then the instructions.
_FLOW_MOD = struct.Struct("!BBHIQQBBHHHIIIH2xHH").pack
_FLOW_MOD_BEFORE_OXMS = 52
_GROUP_MOD = struct.Struct("!BBHIHBxI").pack
_BUCKET = struct.Struct("!HHII4x").pack
_METER_INSTRUCTION = struct.Struct("!HHI").pack
_ACTIONS_INSTRUCTION = struct.Struct("!HH4x").pack
_GOTO_INSTRUCTION = struct.Struct("!HHB3x").pack
_OUTPUT_ACTION = struct.Struct("!HHIH6x").pack
_GROUP_ACTION = struct.Struct("!HHI").pack
_APPLY_ONE_GROUP = struct.Struct("!HH4xHHI").pack  # apply-actions holding one group action
_DEC_NW_TTL_ACTION = struct.pack("!HH4x", ofp.OFPAT_DEC_NW_TTL, 8)
_PUSH_VLAN_ACTION = struct.Struct("!HHH2x").pack
_POP_VLAN_ACTION = struct.pack("!HH4x", ofp.OFPAT_POP_VLAN, 8)

VERSION = ofp.OFP_VERSION
OFPT_FLOW_MOD = ofp.OFPT_FLOW_MOD
OFPT_GROUP_MOD = ofp.OFPT_GROUP_MOD
OFPMT_OXM = ofp.OFPMT_OXM
OFPIT_METER = ofp.OFPIT_METER
OFPIT_APPLY_ACTIONS = ofp.OFPIT_APPLY_ACTIONS
OFPIT_GOTO_TABLE = ofp.OFPIT_GOTO_TABLE
OFPAT_OUTPUT = ofp.OFPAT_OUTPUT
OFPAT_GROUP = ofp.OFPAT_GROUP
OFPAT_SET_FIELD = ofp.OFPAT_SET_FIELD
NO_BUFFER = ofp.OFP_NO_BUFFER
OFPP_ANY = ofp.OFPP_ANY
OFPG_ANY = ofp.OFPG_ANY
OFPFC_ADD = ofp.OFPFC_ADD
OFPFC_MODIFY_STRICT = ofp.OFPFC_MODIFY_STRICT
OFPFC_DELETE_STRICT = ofp.OFPFC_DELETE_STRICT
ADD, MODIFY, DELETE = Op.ADD, Op.MODIFY, Op.DELETE  # Enum's __hash__ is Python code: flows compare with `is`
_GROUP_COMMANDS = {Op.ADD: ofp.OFPGC_ADD, Op.MODIFY: ofp.OFPGC_MODIFY, Op.DELETE: ofp.OFPGC_DELETE}
_GROUP_TYPES = {GroupType.INDIRECT: ofp.OFPGT_INDIRECT, GroupType.SELECT: ofp.OFPGT_SELECT}

_EMPTY_MATCH = (4, _PAD[4])


def _set_field_prefix(name: str) -> tuple[bytes, int, bytes]:
    width = FIELDS[name][1] // 8
    pad = -(8 + width) & 7
    return struct.pack("!HHI", OFPAT_SET_FIELD, 8 + width + pad, oxm_header(name, False)), width, _PAD[pad]


_SET_FIELD = {name: _set_field_prefix(name) for name in FIELDS}


def _match(match: Match) -> tuple[int, bytes]:
    """(ofp_match length without its padding, the OXM TLVs with the padding)."""
    fields = match.fields
    if not fields:
        return _EMPTY_MATCH
    body = b""
    last = -1
    for f in fields:
        mask = f.mask
        if mask is None:
            number, encode = _EXACT[f.name]
            body += encode(f.value)
        else:
            number, encode = _MASKED[f.name]
            body += encode(f.value, mask)
        if number <= last:
            return _match_reordered(fields)
        last = number
    length = 4 + len(body)
    return length, body + _PAD[-length & 7]


def _match_reordered(fields) -> tuple[int, bytes]:
    # Match.of sorts by name, os-ken by OXM number; a repeated name keeps its last value, as in
    # the keyword arguments os-ken's OFPMatch is built from.
    by_number = {}
    for f in fields:
        if f.mask is None:
            number, encode = _EXACT[f.name]
            by_number[number] = encode(f.value)
        else:
            number, encode = _MASKED[f.name]
            by_number[number] = encode(f.value, f.mask)
    body = b"".join([by_number[n] for n in sorted(by_number)])
    length = 4 + len(body)
    return length, body + _PAD[-length & 7]


def _action(action: Action) -> bytes:
    kind = type(action)
    if kind is ToGroup:
        return _GROUP_ACTION(OFPAT_GROUP, 8, action.group_id)
    if kind is Output:
        return _OUTPUT_ACTION(OFPAT_OUTPUT, 16, action.port, action.max_len)
    if kind is SetField:
        prefix, width, pad = _SET_FIELD[action.name]
        return prefix + action.value.to_bytes(width, "big") + pad
    if kind is DecTtl:
        return _DEC_NW_TTL_ACTION
    if kind is PushVlan:
        return _PUSH_VLAN_ACTION(ofp.OFPAT_PUSH_VLAN, 8, action.ethertype)
    if kind is PopVlan:
        return _POP_VLAN_ACTION
    raise TypeError(f"unknown action {action!r}")


def encode_flow_mod(op: FlowOp, xid: int = 0) -> bytes:
    """The flow_mod for one typed flow operation: ADD, MODIFY_STRICT or DELETE_STRICT (a delete only of
    our own cookie)."""
    flow = op.flow
    kind = op.op
    match_len, oxms = _match(flow.match)
    if kind is ADD:
        command = OFPFC_ADD
    elif kind is MODIFY:
        command = OFPFC_MODIFY_STRICT
    elif kind is DELETE:
        return _FLOW_MOD(VERSION, OFPT_FLOW_MOD, _FLOW_MOD_BEFORE_OXMS + len(oxms), xid,
                         flow.cookie, COOKIE_MASK, flow.table, OFPFC_DELETE_STRICT, 0, 0, flow.priority,
                         NO_BUFFER, OFPP_ANY, OFPG_ANY, 0, OFPMT_OXM, match_len) + oxms
    else:
        raise KeyError(kind)
    # Instructions in the order OpenFlow executes them: meter, apply-actions, goto-table.
    meter, actions, goto = flow.meter, flow.actions, flow.goto
    body = oxms if meter is None else oxms + _METER_INSTRUCTION(OFPIT_METER, 8, meter)
    if actions:
        if len(actions) == 1:
            action = actions[0]
            if type(action) is ToGroup:
                body += _APPLY_ONE_GROUP(OFPIT_APPLY_ACTIONS, 16, OFPAT_GROUP, 8, action.group_id)
            else:
                encoded = _action(action)
                body += _ACTIONS_INSTRUCTION(OFPIT_APPLY_ACTIONS, 8 + len(encoded)) + encoded
        else:
            encoded = b"".join([_action(a) for a in actions])
            body += _ACTIONS_INSTRUCTION(OFPIT_APPLY_ACTIONS, 8 + len(encoded)) + encoded
    if goto is not None:
        body += _GOTO_INSTRUCTION(OFPIT_GOTO_TABLE, 8, goto)
    return _FLOW_MOD(VERSION, OFPT_FLOW_MOD, _FLOW_MOD_BEFORE_OXMS + len(body), xid,
                     flow.cookie, 0, flow.table, command, flow.idle_timeout, flow.hard_timeout, flow.priority,
                     NO_BUFFER, OFPP_ANY, OFPG_ANY, flow.flags, OFPMT_OXM, match_len) + body


def encode_group_mod(op: GroupOp, xid: int = 0) -> bytes:
    """The group_mod for one typed group operation.

    A delete of a group whose content could not be read back (spec None) goes out with type
    OFPGT_ALL, os-ken's default: a delete names its group by id.
    """
    spec = op.spec
    if op.op is DELETE:
        group_type = ofp.OFPGT_ALL if spec is None else _GROUP_TYPES[spec.type]
        return _GROUP_MOD(VERSION, OFPT_GROUP_MOD, 16, xid, ofp.OFPGC_DELETE, group_type, op.group_id)
    parts = []
    size = 16
    for bucket in spec.buckets:
        actions = b"".join([_action(a) for a in bucket.actions])
        parts.append(_BUCKET(16 + len(actions), bucket.weight, OFPP_ANY, OFPG_ANY))
        parts.append(actions)
        size += 16 + len(actions)
    return _GROUP_MOD(VERSION, OFPT_GROUP_MOD, size, xid, _GROUP_COMMANDS[op.op], _GROUP_TYPES[spec.type],
                      op.group_id) + b"".join(parts)


# --- route flows: one per prefix, a million in a full table -------------------------------------
# Each is eth_type plus the destination (masked, exact at full length, absent at length 0), then
# either one group action or the metered punt: so the whole message is a few fixed shapes.

_LOW32 = (1 << 32) - 1
_LOW128 = (1 << 128) - 1


_VALUE_AT = _FLOW_MOD_BEFORE_OXMS + 6 + 4  # after the eth_type OXM and the destination's OXM header
_ROUTE_TEMPLATES: dict[tuple, tuple] = {}


def _route_template(op: Op, v6: bool, length: int, group: bool, bundle_id: int | None = None) -> tuple:
    """(pack, constant chunks) for one message shape: a single struct call fills xid, value and group.

    The constant bytes travel as `s` fields, cut from the typed route flow's own encoding (value 0,
    xid 0). With a bundle id, the bundle add message's head comes first, in the first chunk.
    """
    flow = route_flow(prefix.pack(6 if v6 else 4, 0, length), 1 if group else KERNEL)
    reference = encode_flow_mod(FlowOp(op, flow))
    head = b"" if bundle_id is None else bundle_add_head(bundle_id, len(reference))
    fmt, chunks, pos = f"!{len(head) + 4}s", [head + reference[:4]], 8  # version, type, length; then the xid
    fmt += "I"
    value_code = ("QQ" if v6 else "I") if length else ""
    if value_code:
        fmt += f"{_VALUE_AT - pos}s" + value_code
        chunks.append(reference[pos:_VALUE_AT])
        pos = _VALUE_AT + (16 if v6 else 4)
    end = len(reference) - (4 if group and op is not DELETE else 0)
    fmt += f"{end - pos}s"
    chunks.append(reference[pos:end])
    if end < len(reference):
        fmt += "I"
    return struct.Struct(fmt).pack, chunks


def encode_route(op: Op, pk: int, target: int, xid: int = 0) -> bytes:
    """The flow_mod for a route flow: encode_flow_mod(FlowOp(op, pipeline.route_flow(pk, target))).

    One struct call per message, from a template per (operation, family and length, form).
    """
    v6 = pk >= V6_TAG
    length = (pk >> 128) & 0xFF if v6 else pk >> 32
    group = target != KERNEL and op is not DELETE
    key = (op, v6, length, group)
    template = _ROUTE_TEMPLATES.get(key)
    if template is None:
        template = _ROUTE_TEMPLATES[key] = _route_template(op, v6, length, group)
    pack, chunks = template
    if not length:
        return pack(chunks[0], xid, chunks[1], target) if group else pack(chunks[0], xid, chunks[1])
    if v6:
        value = (pk & _LOW128) << (128 - length)
        if group:
            return pack(chunks[0], xid, chunks[1], value >> 64, value & 0xFFFFFFFFFFFFFFFF, chunks[2], target)
        return pack(chunks[0], xid, chunks[1], value >> 64, value & 0xFFFFFFFFFFFFFFFF, chunks[2])
    value = (pk & _LOW32) << (32 - length)
    if group:
        return pack(chunks[0], xid, chunks[1], value, chunks[2], target)
    return pack(chunks[0], xid, chunks[1], value, chunks[2])


def encode_routes(op: Op, routes: list[tuple[Op, int, int]], bundle_id: int | None = None) -> list[bytes]:
    """encode_route(op, pk, target) for each (op, pk, target) of a run that shares `op`, xid 0; each
    inside a bundle add message when `bundle_id` is given (bundle_add_head and the message in one).

    A pass holds thousands of routes of a few shapes. Here the shape's template comes from a local
    dict keyed by a small int, and IPv4 routes other than the default are packed inline: 1M adds
    took 0.6-0.8 µs a route this way against 0.9-1.2 µs through encode_route (which hashes the Op,
    an Enum whose __hash__ is Python code, per call).
    """
    shapes: dict[int, tuple] = {}
    out: list[bytes] = []
    append = out.append
    delete = op is DELETE
    for _, pk, target in routes:
        group = target != KERNEL and not delete
        if pk < V6_TAG and pk >> 32:  # IPv4, not the default route: the bulk of any table
            length = pk >> 32
            key = length << 1 | group
            shape = shapes.get(key)
            if shape is None:
                pack, chunks = _route_template(op, False, length, group, bundle_id)
                shape = shapes[key] = (pack, *chunks)
            pack, start, middle, end = shape
            value = (pk & _LOW32) << (32 - length)
            append(pack(start, 0, middle, value, end, target) if group else pack(start, 0, middle, value, end))
        else:
            message = encode_route(op, pk, target)
            append(message if bundle_id is None else bundle_add_head(bundle_id, len(message)) + message)
    return out


# --- bundles (the ONF extension to OpenFlow 1.3, which Open vSwitch implements) ---------------

ONF_EXPERIMENTER = 0x4F4E4600
ONF_BUNDLE_CONTROL, ONF_BUNDLE_ADD = 2300, 2301
BUNDLE_OPEN, BUNDLE_COMMIT = 0, 4  # ONF_BCT_OPEN_REQUEST, ONF_BCT_COMMIT_REQUEST
BUNDLE_FLAGS = 3  # ONF_BF_ATOMIC | ONF_BF_ORDERED
_BUNDLE_HEAD = struct.Struct("!BBHIIIIHH")  # ofp_header, experimenter, exp_type, bundle id, type or pad, flags


def encode_bundle_control(kind: int, bundle_id: int, xid: int = 0) -> bytes:
    return _BUNDLE_HEAD.pack(ofp.OFP_VERSION, ofp.OFPT_EXPERIMENTER, _BUNDLE_HEAD.size, xid, ONF_EXPERIMENTER,
                             ONF_BUNDLE_CONTROL, bundle_id, kind, BUNDLE_FLAGS)


def bundle_add_head(bundle_id: int, length: int, xid: int = 0) -> bytes:
    """What goes before a message of `length` bytes and this xid to add it to a bundle (the
    extension requires the message's xid to be the bundle message's own)."""
    return _BUNDLE_HEAD.pack(ofp.OFP_VERSION, ofp.OFPT_EXPERIMENTER, _BUNDLE_HEAD.size + length, xid,
                             ONF_EXPERIMENTER, ONF_BUNDLE_ADD, bundle_id, 0, BUNDLE_FLAGS)


def is_bundle_message(data: bytes) -> bool:
    """Whether `data` (the start of a message, as an error quotes it) is an ONF bundle message."""
    if len(data) < 16 or data[1] != ofp.OFPT_EXPERIMENTER:
        return False
    experimenter, exp_type = struct.unpack_from("!II", data, 8)
    return experimenter == ONF_EXPERIMENTER and exp_type in (ONF_BUNDLE_CONTROL, ONF_BUNDLE_ADD)


# --- meters -----------------------------------------------------------------------------------

_METER_MOD = struct.Struct("!BBHIHHI").pack
_DROP_BAND = struct.Struct("!HHII4x").pack
METER_FLAGS = ofp.OFPMF_PKTPS | ofp.OFPMF_BURST
METER_FLAGS_KBPS = ofp.OFPMF_KBPS | ofp.OFPMF_BURST
_METER_COMMANDS = {Op.ADD: ofp.OFPMC_ADD, Op.MODIFY: ofp.OFPMC_MODIFY, Op.DELETE: ofp.OFPMC_DELETE}


def encode_meter_mod(op: MeterOp, xid: int = 0) -> bytes:
    """A meter with one drop band (MeterSpec)."""
    spec: MeterSpec = op.spec
    band = b"" if op.op is Op.DELETE else _DROP_BAND(ofp.OFPMBT_DROP, 16, spec.rate, spec.burst)
    flags = 0 if op.op is Op.DELETE else METER_FLAGS_KBPS if spec.kbps else METER_FLAGS
    return _METER_MOD(VERSION, ofp.OFPT_METER_MOD, 16 + len(band), xid, _METER_COMMANDS[op.op], flags,
                      op.meter_id) + band


# --- PacketOut ----------------------------------------------------------------------------------
# The per-frame hot path of the TAP relay: os-ken's objects cost tens of microseconds per frame,
# a struct template about one.

_PACKET_OUT = struct.Struct("!BBHIIIH6xHHIH6x")
_PACKET_OUT_LEN = _PACKET_OUT.size  # header 8 + body 16 + one output action 16


def packet_out(port: int, data: bytes, xid: int = 0) -> bytes:
    """A PacketOut sending data, unbuffered, from the controller out of one port."""
    return _PACKET_OUT.pack(
        ofp.OFP_VERSION, ofp.OFPT_PACKET_OUT, _PACKET_OUT_LEN + len(data), xid,
        ofp.OFP_NO_BUFFER, ofp.OFPP_CONTROLLER, 16,
        ofp.OFPAT_OUTPUT, 16, port, 0) + data
