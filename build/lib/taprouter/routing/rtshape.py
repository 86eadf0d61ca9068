"""Route messages of a bulk load, decoded a datagram at a time from their learnt layout.

The kernel lays out every route of one kind the same way: the same attributes
in the same order, with the same lengths. A full table arrives as thousands
of datagrams of a few hundred such messages each. Walking each message's
attributes costs a few microseconds in Python; instead, the first message of
a datagram teaches its layout (its shape), a decoder for that shape is
generated once (one `struct` format for the whole message, the checks as
constants), and `struct.iter_unpack` reads the whole datagram in C.

Every message is still checked against the shape (length, type, family, each
attribute's header); any difference sends the whole datagram to the generic
walk in rtdecode, which tests check against pyroute2.
"""

from __future__ import annotations

import struct
from typing import Callable

from .. import prefix
from . import rtcolumns, rtdecode
from .rtnl import (AF_INET, AF_INET6, RTA_DST, RTA_GATEWAY, RTA_MULTIPATH, RTA_NH_ID, RTA_OIF,
                   RTA_PRIORITY, RTA_TABLE, RTA_VIA, RTM_DELROUTE, RTM_NEWROUTE, RTN_UNICAST, never_in_fib_source,
                       RT_TABLE_MAIN, RTNH_F_LINKDOWN)

_HEAD = struct.Struct("=IHHIIBBBBBBBBI")  # nlmsghdr, rtmsg
_RTATTR = struct.Struct("=HH")
_LENGTH = struct.Struct("=I")
_FIELDS = {RTA_DST: "dst", RTA_OIF: "oif", RTA_GATEWAY: "gateway", RTA_PRIORITY: "metric", RTA_TABLE: "table"}
_GENERIC_ONLY = frozenset({RTA_MULTIPATH, RTA_VIA, RTA_NH_ID})
_MAX_SHAPES = 256

Decoder = Callable[[bytes], "list | None"]
_DECODERS: dict[tuple, Decoder | None] = {}


def _layout(data: bytes, offset: int, length: int) -> tuple[tuple[int, int], ...] | None:
    """The (length, type) of each attribute of one message; None if it needs the generic walk."""
    attributes = []
    pos, end = offset + _HEAD.size, offset + length
    while pos < end:
        if pos + 4 > end:
            return None
        alen, atype = _RTATTR.unpack_from(data, pos)
        if alen < 4 or pos + alen > end or atype in _GENERIC_ONLY:
            return None
        attributes.append((alen, atype))
        pos += (alen + 3) & ~3
    return tuple(attributes) if pos == end else None


def _generate(family: int, length: int, layout: tuple[tuple[int, int], ...]) -> Decoder:
    """A decoder for datagrams of messages of exactly this shape, as Python source compiled once."""
    fmt = "=IHHIIBBBBBBBBI"
    names = ["length", "kind", "_f", "_s", "_p", "family", "dst_len", "src_len", "_tos", "table", "_proto",
             "_scope", "rtype", "rtm_flags"]
    checks = [f"length != {length}", f"family != {family}", "src_len", f"rtype != {RTN_UNICAST}",
              f"(kind != {RTM_NEWROUTE} and kind != {RTM_DELROUTE})"]
    seen: set[str] = set()
    for i, (alen, atype) in enumerate(layout):
        padded = (alen + 3) & ~3
        fmt += "HH"
        names += [f"l{i}", f"t{i}"]
        checks += [f"l{i} != {alen}", f"t{i} != {atype}"]
        field = _FIELDS.get(atype)
        if field is None or field in seen:
            fmt += f"{padded - 4}x"
            continue
        seen.add(field)
        fmt += ("I" if field in ("oif", "metric", "table") else f"{alen - 4}s") + f"{padded - alen}x"
        names.append(field)
    fmt += f"{((length + 3) & ~3) - length}x"  # the padding up to the next message
    bits = 32 if family == AF_INET else 128
    tag = "dst_len << 32 | " if family == AF_INET else f"{prefix.V6_TAG} | dst_len << 128 | "
    dst = "int.from_bytes(dst, 'big')" if "dst" in seen else "0"
    gateway = "gateway" if "gateway" in seen else "None"
    oif = "oif" if "oif" in seen else "0"
    metric = "metric" if "metric" in seen else "0"
    skipped = never_in_fib_source(family)
    source = f"""
def decode(data, iter_unpack=iter_unpack, hop_cache=hop_cache, single_hop=single_hop, entry=entry):
    events = []
    append = events.append
    for ({", ".join(names)},) in iter_unpack(data):
        if {" or ".join(checks)}:
            return None
        if table != {RT_TABLE_MAIN}:
            continue
        value = {dst}
        if {skipped}:
            continue
        linkdown = bool(rtm_flags & {RTNH_F_LINKDOWN})
        hops = hop_cache.get(({family}, {oif}, {gateway}, linkdown))
        if hops is None:
            hops = single_hop({family}, {oif}, {gateway}, linkdown)
        append(({tag}value >> ({bits} - dst_len), entry({metric}, hops), kind == {RTM_DELROUTE}))
    return events
"""
    namespace = {"iter_unpack": struct.Struct(fmt).iter_unpack, "hop_cache": rtdecode._HOP_CACHE,
                 "single_hop": rtdecode._single_hop, "entry": rtdecode.entry}
    exec(compile(source, f"<route shape {family}/{length}>", "exec"), namespace)  # noqa: S102
    return namespace["decode"]


def _decoder(data: bytes) -> Decoder | None:
    """The decoder for a datagram whose first message has this shape, if all could share it."""
    length, kind = struct.unpack_from("=IH", data, 0)
    if kind != RTM_NEWROUTE and kind != RTM_DELROUTE or length < _HEAD.size or length > len(data):
        return None
    if len(data) % ((length + 3) & ~3):
        return None  # messages of other lengths: no single shape
    family = data[16]
    layout = _layout(data, 0, length)
    if layout is None or family not in (AF_INET, AF_INET6):
        return None
    key = (family, length, layout)
    decoder = _DECODERS.get(key, False)
    if decoder is False:
        if len(_DECODERS) >= _MAX_SHAPES:
            _DECODERS.clear()
        decoder = _DECODERS[key] = _combined(rtcolumns.plan(family, length, layout),
                                             _generate(family, length, layout))
    return decoder


def _combined(columns: rtcolumns.Columns | None, rows: Decoder) -> Decoder:
    """Columns when the run fits them (the common case), else a message at a time."""
    if columns is None:
        return rows

    def decode(data: bytes) -> list | None:
        events = columns(data)
        return rows(data) if events is None else events
    return decode


def _generic(data: bytes, events: list) -> None:
    for kind, offset in rtdecode.split(data):
        route = rtdecode.decode(data, offset)
        if route is not None:
            events.append((route[0], route[1:], kind == RTM_DELROUTE))


def _decode_run(run: bytes, events: list) -> None:
    decoder = _decoder(run)
    decoded = decoder(run) if decoder is not None else None
    if decoded is None:
        _generic(run, events)
    else:
        events += decoded


def route_events(data: bytes) -> list[tuple] | None:
    """Every route message of a datagram as (prefix, (metric, hops), delete), in order; None if the
    datagram holds any other kind of message (the caller then keeps the order with those).

    Messages come in runs of one length (IPv4, then IPv6, ...); each run is decoded by its shape.
    """
    if len(data) >= _HEAD.size:
        decoder = _decoder(data)
        if decoder is not None:
            events = decoder(data)
            if events is not None:
                return events
    events: list = []
    start = run_length = 0
    for kind, offset in rtdecode.split(data):
        if kind != RTM_NEWROUTE and kind != RTM_DELROUTE:
            return None
        length = _LENGTH.unpack_from(data, offset)[0]
        if length != run_length:
            if offset > start:
                _decode_run(data[start:offset], events)
            start, run_length = offset, length
    if len(data) > start:
        _decode_run(data[start:], events)
    return events
