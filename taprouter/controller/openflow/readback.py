"""Decodes flow-stats reply entries (OFPMP_FLOW) fast: route flows to (prefix, target), the rest via os-ken.

After a restart the daemon reads back every flow of a switch, up to a million route flows. os-ken's
OFPFlowStats.parser builds an OFPMatch, instruction and action objects per entry, and
decode.flow_from_stats a Flow from them: tens of microseconds an entry, so minutes for a full table,
all on os-ken's receive thread. Here os-ken only cuts the reply into entries (RawFlowStats), and a
route flow in the exact wire shape pipeline.route_flow + wire.encode_flow_mod produce (or a switch
reports back) costs two struct unpacks. Anything else, far fewer, goes through os-ken and
flow_from_stats unchanged, so its Flow and its ValueError are those of the reference path.
"""

from __future__ import annotations

import struct
from typing import Callable, Iterable

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as ofp_parser

from ... import prefix
from . import pipeline, readcolumns
from .decode import flow_from_stats
from .flows import ETH_TYPE_IPV4, ETH_TYPE_IPV6, OFPCML_NO_BUFFER, OFPP_CONTROLLER, Flow
from .pipeline import FIB_PRIORITY_BASE, KERNEL, Owner, Table
from .readcolumns import Columns
from .wire import oxm_header

ENTRY_HEAD = 48  # ofp_flow_stats up to its ofp_match


class RawFlowStats:
    """Flow-stats entries left as bytes: what os-ken's reply loop needs (length) and the bytes.

    As os-ken's body class, it takes every entry from its offset to the end of the reply message
    at once: os-ken's loop then runs once per message rather than once per entry (about 2 us
    an entry), and decode_all frames the entries itself.
    """

    __slots__ = ("length", "data")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.length = len(data)

    @classmethod
    def parser(cls, buf, offset: int) -> "RawFlowStats":
        if offset >= len(buf):
            raise ValueError(f"no flow-stats entry at offset {offset} of {len(buf)}")
        return cls(bytes(buf[offset:]))  # buf is os-ken's bytearray of this one message: keep a copy


# os-ken's multipart reply loop calls <reply class>.cls_stats_body_cls.parser for every entry;
# OFPFlowStatsReply's is OFPFlowStats (a full object tree per entry: a million take minutes).


def install() -> None:
    """Makes os-ken hand OFPFlowStatsReply bodies over as RawFlowStats; idempotent."""
    ofp_parser.OFPFlowStatsReply.cls_stats_body_cls = RawFlowStats



# length, table_id, priority, cookie, then the ofp_match's type and length.
_HEAD_FORMAT = "!HBx8xH10xQ16xHH"
_HEAD = struct.Struct(_HEAD_FORMAT).unpack_from
_ROUTE_COOKIE = pipeline.cookie(Owner.ROUTE)
_GROUP_TAIL = "HH4xHHI"  # apply-actions (4, 16), group action (22, 8, group id)
_PUNT_TAIL = "HHIHH4xHHIH6x"  # meter (6, 8, id), apply-actions (4, 24), output (0, 16, port, max_len)
_GROUP_CONST = (ofp.OFPIT_APPLY_ACTIONS, 16, ofp.OFPAT_GROUP, 8)
_PUNT_CONST = (ofp.OFPIT_METER, 8, pipeline.SLOW_PATH_METER, ofp.OFPIT_APPLY_ACTIONS, 24,
               ofp.OFPAT_OUTPUT, 16, OFPP_CONTROLLER, OFPCML_NO_BUFFER)
Shape = Callable[[bytes, int, int], "tuple[int, int] | None"]


def _shape(version: int, dst: str, punt: bool) -> tuple[tuple[int, int, int], tuple[Shape, Columns | None]]:
    """The key (table, match length, entry length), the entry decoder and the block decoder
    (readcolumns; None for a /0, one route) of one route-flow shape.

    dst is "" (a /0: no destination field), "exact" (a /32 or /128) or "masked" (any length, a
    full or zero mask included). The OXMs must come in this order, eth_type first, as os-ken and
    Open vSwitch write them; another order is legal OpenFlow but takes the slow path.
    """
    table, eth_type, name, width = ((Table.FIB4, ETH_TYPE_IPV4, "ipv4_dst", 32) if version == 4
                                    else (Table.FIB6, ETH_TYPE_IPV6, "ipv6_dst", 128))
    word = "I" if version == 4 else "QQ"  # struct has no 128-bit integer: two halves
    nwords = len(word)
    head = (oxm_header("eth_type", False), eth_type)
    match_len = 4 + 6
    fmt = "!IH"
    if dst:
        head += (oxm_header(name, dst == "masked"),)
        fmt += "I" + word * (1 + (dst == "masked"))
        match_len += 4 + width // 8 * (1 + (dst == "masked"))
    fmt += "x" * (-match_len & 7) + (_PUNT_TAIL if punt else _GROUP_TAIL)
    unpack = struct.Struct(fmt).unpack_from
    nhead = len(head)
    full = (1 << width) - 1
    v6 = version == 6

    def decode_shape(data: bytes, offset: int, priority: int) -> tuple[int, int] | None:
        t = unpack(data, offset + ENTRY_HEAD + 4)
        if t[:nhead] != head:
            return None
        if punt:
            if t[-9:] != _PUNT_CONST:
                return None
            target = KERNEL
        else:
            if t[-5:-1] != _GROUP_CONST or t[-1] == KERNEL:  # group 0 would read as the punt form
                return None
            target = t[-1]
        plen = priority - FIB_PRIORITY_BASE
        if not dst:
            return (prefix.pack(version, 0, 0), target) if plen == 0 else None
        value = t[nhead] << 64 | t[nhead + 1] if v6 else t[nhead]
        if dst == "exact":
            return (prefix.pack(version, value, width), target) if plen == width else None
        mask = t[nhead + nwords] << 64 | t[nhead + nwords + 1] if v6 else t[nhead + nwords]
        if not 0 <= plen <= width or mask != full ^ (full >> plen) or value & ~mask:
            return None
        return prefix.pack(version, value, plen), target

    pad_len = match_len + (-match_len & 7)
    length = ENTRY_HEAD + pad_len + (32 if punt else 16)
    columns = None
    if dst:
        # The same layout as a whole entry: the head's fields are 0-5, the match's from 6 on.
        tail = _PUNT_CONST if punt else _GROUP_CONST
        first_tail = 6 + nhead + nwords * (1 + (dst == "masked"))
        const = {0: length, 1: int(table), 3: _ROUTE_COOKIE, 4: ofp.OFPMT_OXM, 5: match_len,
                 **{6 + i: v for i, v in enumerate(head)}, **{first_tail + i: v for i, v in enumerate(tail)}}
        columns = readcolumns.plan(
            _HEAD_FORMAT + fmt[1:], const, priority=2, value=list(range(6 + nhead, 6 + nhead + nwords)),
            mask=list(range(6 + nhead + nwords, first_tail)) if dst == "masked" else [],
            target=None if punt else first_tail + len(tail), version=version, base=FIB_PRIORITY_BASE, punt=KERNEL)
    return (int(table), match_len, length), (decode_shape, columns)


_DECODERS = dict(
    _shape(version, dst, punt) for version in (4, 6) for dst in ("", "exact", "masked") for punt in (False, True))
if len(_DECODERS) != 12:  # the key must tell every shape apart
    raise ImportError("readback: route-flow shapes collide")
_SHAPES: dict[tuple[int, int, int], Shape] = {key: entry for key, (entry, _) in _DECODERS.items()}
_COLUMNS: dict[tuple[int, int, int], Columns] = {key: block for key, (_, block) in _DECODERS.items() if block}


def decode(data: bytes) -> tuple[int, int] | Flow:
    """A canonical route flow as (prefix.pack(...), group id or KERNEL), anything else as a Flow.

    Raises ValueError where decode.flow_from_stats does, and for entries os-ken cannot parse.
    """
    if len(data) < ENTRY_HEAD + 8:
        raise ValueError(f"flow-stats entry of {len(data)} bytes")
    length, table, priority, cookie, match_type, match_len = _HEAD(data, 0)
    if cookie == _ROUTE_COOKIE and match_type == ofp.OFPMT_OXM and length == len(data):
        shape = _SHAPES.get((table, match_len, length))
        if shape is not None:
            route = shape(data, 0, priority)
            if route is not None:
                return route
    return _slow(data)


_INSTRUCTION = struct.Struct("!HH").unpack_from
_ACTION_LISTS = frozenset({ofp.OFPIT_WRITE_ACTIONS, ofp.OFPIT_APPLY_ACTIONS, ofp.OFPIT_CLEAR_ACTIONS})


def _check_framing(data: bytes) -> None:
    """Raise ValueError where os-ken's parser would loop forever.

    os-ken walks instructions and actions by the length each parsed object reports. Some report a
    fixed size whatever the entry says (goto-table, meter, dec-mpls-ttl...), so where the entry says
    otherwise its walk drifts off the real boundaries, and a length of 0 where it lands (read as an
    action list or an experimenter action) never moves it on. Walk by the entry's own lengths and
    require os-ken's to agree at every step; then its walk is this one, and ends.
    """
    (length,) = struct.unpack_from("!H", data)
    if length > len(data):
        raise ValueError(f"flow-stats entry of length {length} in {len(data)} bytes")
    offset = ENTRY_HEAD + (_INSTRUCTION(data, ENTRY_HEAD)[1] + 7) // 8 * 8
    while offset < length:
        kind, size = _INSTRUCTION(data, offset)
        if size == 0:
            raise ValueError(f"instruction of length 0 at offset {offset}")
        if kind in _ACTION_LISTS:
            at = offset + 8
            while at < offset + size:
                step = _INSTRUCTION(data, at)[1]
                if step == 0:
                    raise ValueError(f"action of length 0 at offset {at}")
                _agree(ofp_parser.OFPAction.parser, data, at, step, "action")
                at += step
        else:  # an action list's length is the entry's own; this one may be os-ken's constant
            _agree(ofp_parser.OFPInstruction.parser, data, offset, size, "instruction")
        offset += size


def _agree(parse, data: bytes, offset: int, size: int, what: str) -> None:
    try:
        parsed = parse(data, offset)
        reads = parsed.len
    except Exception as exc:  # os-ken raises all sorts here, or returns None (AttributeError)
        raise ValueError(f"os-ken cannot parse the {what} at offset {offset}: {exc!r}") from exc
    if reads != size:
        raise ValueError(f"{what} at offset {offset} of length {size}, which os-ken reads as {reads}")


def parse(data: bytes):
    """The entry as os-ken's OFPFlowStats, or ValueError, never a parser that loops forever."""
    try:
        _check_framing(data)
        return ofp_parser.OFPFlowStats.parser(data, 0)
    except ValueError:
        raise
    except Exception as exc:
        # os-ken reports bad entries variously: struct.error or OFPTruncatedMessage (truncated),
        # AssertionError (unknown action type), AttributeError (unknown instruction type, which it
        # parses as None). One such entry must not sink the whole read-back.
        raise ValueError(f"os-ken cannot parse flow-stats entry {data.hex()}: {exc!r}") from exc


def _slow(data: bytes) -> Flow:
    return flow_from_stats(parse(data))


def decode_all(blocks: Iterable[RawFlowStats]) -> tuple[dict[int, int], list[Flow], list[RawFlowStats]]:
    """(route flows prefix -> group id or KERNEL, other flows, entries that raised ValueError).

    Each block holds whole entries back to back. An entry whose length cannot be right ends its
    block: nothing after it can be framed, so the rest is one refused entry.
    """
    routes: dict[int, int] = {}
    flows: list[Flow] = []
    bad: list[RawFlowStats] = []
    shapes, route_cookie, oxm = _SHAPES, _ROUTE_COOKIE, ofp.OFPMT_OXM
    for block in blocks:
        data = block.data
        size = len(data)
        if size >= ENTRY_HEAD + 8:  # a block of route flows of one shape: a column at a time
            length, table, _priority, _cookie, _match_type, match_len = _HEAD(data, 0)
            columns = _COLUMNS.get((table, match_len, length))
            got = columns(data) if columns is not None else None
            if got is not None:
                routes.update(zip(*got))
                continue
        offset = 0
        while offset < size:
            if offset + ENTRY_HEAD + 8 > size:
                bad.append(RawFlowStats(data[offset:]))
                break
            length, table, priority, cookie, match_type, match_len = _HEAD(data, offset)
            if length < ENTRY_HEAD + 8 or offset + length > size:
                bad.append(RawFlowStats(data[offset:]))
                break
            if cookie == route_cookie and match_type == oxm:
                shape = shapes.get((table, match_len, length))
                if shape is not None:
                    route = shape(data, offset, priority)
                    if route is not None:
                        routes[route[0]] = route[1]
                        offset += length
                        continue
            entry = data[offset:offset + length]
            offset += length
            try:
                flows.append(_slow(entry))
            except ValueError:
                bad.append(RawFlowStats(entry))
    return routes, flows, bad


_COUNTERS = struct.Struct("!H22xQQQ")  # length; cookie, packet count, byte count


def counters(blocks: Iterable[RawFlowStats]) -> dict[int, tuple[int, int]]:
    """Packets and bytes per cookie, summed over the entries (a policy's flows share its cookie)."""
    totals: dict[int, tuple[int, int]] = {}
    unpack = _COUNTERS.unpack_from
    for block in blocks:
        data, offset = block.data, 0
        while offset + _COUNTERS.size <= len(data):
            length, flow_cookie, packets, octets = unpack(data, offset)
            if length < _COUNTERS.size:
                break
            was = totals.get(flow_cookie, (0, 0))
            totals[flow_cookie] = (was[0] + packets, was[1] + octets)
            offset += length
    return totals
