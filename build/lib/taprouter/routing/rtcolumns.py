"""Route messages of one shape, decoded a column at a time.

A full-table load is runs of thousands of route messages with one layout
(rtshape). Unpacking them a message at a time still cost about 2.5 µs each in
Python: a tuple of some 25 fields, a dozen comparisons, a bytes object per
address. Messages of one layout sit at a fixed stride, so each field is a
strided slice of the run: the layout checks (lengths, kinds, family, type,
attribute headers) become one C-speed comparison per field for the whole run,
and what varies (destination, length, kind, gateway, interface, metric) comes
out as columns.

A run with anything the columns do not cover (another table, a linkdown flag,
a multicast or link-local destination, an odd attribute length) returns None,
and rtshape decodes it a message at a time; tests check both against the
generic walk.
"""

from __future__ import annotations

import struct
import sys
from array import array
from itertools import repeat
from typing import Callable

from .. import prefix
from . import rtdecode
from .rtnl import (AF_INET, AF_INET6, RTA_DST, RTA_GATEWAY, RTA_OIF, RTA_PRIORITY, RTA_TABLE, RTM_DELROUTE,
                   RTM_NEWROUTE, RTN_UNICAST, RT_TABLE_MAIN, RTNH_F_LINKDOWN, never_in_fib_first_bytes)

_HEAD_SIZE = 28  # nlmsghdr (16) + rtmsg (12)
_WORD = struct.Struct("=I")
_FIELDS = {RTA_DST: "dst", RTA_OIF: "oif", RTA_GATEWAY: "gateway", RTA_PRIORITY: "metric", RTA_TABLE: "table"}
# A destination the FIB never carries starts with one of these bytes; a run with any of them is
# decoded a message at a time, where the exact rule applies.
_KEEP = {family: bytes(set(range(256)) - set(never_in_fib_first_bytes(family))) for family in (AF_INET, AF_INET6)}
_LINKDOWN_BITS = bytes(1 if b & RTNH_F_LINKDOWN else 0 for b in range(256))

Columns = Callable[[bytes], "list | None"]


def plan(family: int, length: int, layout: tuple[tuple[int, int], ...]) -> Columns | None:
    """The column decoder for messages of this shape, or None if the shape needs rows."""
    if length % 4:
        return None  # padded messages: the stride is still fixed, but keep the words aligned
    address = 4 if family == AF_INET else 16
    words = [(0, length)]  # (word index in a message, value every message must have there)
    fields: dict[str, int] = {}
    pos = _HEAD_SIZE
    for alen, atype in layout:
        if pos % 4:
            return None
        words.append((pos // 4, alen | atype << 16))
        field = _FIELDS.get(atype)
        if field is not None:
            if field in fields:
                return None  # an attribute twice: rows keep the rules for that
            size = address if field in ("dst", "gateway") else 4
            if alen != 4 + size:
                return None
            fields[field] = pos + 4
        pos += (alen + 3) & ~3
    return _Decoder(family, length, tuple(words), fields).decode


class _Decoder:
    def __init__(self, family: int, length: int, words: tuple, fields: dict[str, int]) -> None:
        self.family, self.stride, self.words = family, length, words
        self.dst, self.gateway = fields.get("dst"), fields.get("gateway")
        self.oif, self.metric, self.table = fields.get("oif"), fields.get("metric"), fields.get("table")
        self.v6 = family != AF_INET

    def decode(self, data: bytes) -> list | None:
        stride = self.stride
        count, rest = divmod(len(data), stride)
        if rest or not count:
            return None
        view = memoryview(data).cast("I")
        step = stride // 4
        for index, value in self.words:
            if view[index::step].tobytes() != _WORD.pack(value) * count:
                return None
        kinds = data[4::stride]
        adds = kinds.count(RTM_NEWROUTE)
        if (adds + kinds.count(RTM_DELROUTE) != count or data[5::stride].count(0) != count
                or data[16::stride].count(self.family) != count or data[18::stride].count(0) != count
                or data[23::stride].count(RTN_UNICAST) != count or 1 in data[24::stride].translate(_LINKDOWN_BITS)):
            return None
        if self.table is not None:
            if view[self.table // 4::step].tobytes() != _WORD.pack(RT_TABLE_MAIN) * count:
                return None
        elif data[20::stride].count(RT_TABLE_MAIN) != count:
            return None
        if self.dst is not None and data[self.dst::stride].translate(None, _KEEP[self.family]):
            return None  # a multicast or link-local destination may be among them
        deletes = repeat(False) if adds == count else repeat(True) if not adds else \
            [kind == RTM_DELROUTE for kind in kinds]
        return self._events(data, view, count, deletes)

    def _column(self, data: bytes, view: memoryview, offset: int | None, count: int):
        """A field of every message: repeat(value) when all agree, else a sequence; None if absent."""
        if offset is None:
            return None
        if self.v6 and offset == self.gateway:  # 16 bytes: a bytes column
            first = data[offset:offset + 16]
            column = [data[at:at + 16] for at in range(offset, len(data), self.stride)]
            return repeat(first) if column.count(first) == count else column
        column = view[offset // 4::self.stride // 4]
        first = column[0]
        return repeat(first) if column.tobytes() == _WORD.pack(first) * count else column

    def _events(self, data: bytes, view: memoryview, count: int, deletes) -> list:
        family = self.family
        metrics = self._column(data, view, self.metric, count) or repeat(0)
        oifs = self._column(data, view, self.oif, count) or repeat(0)
        gateways = self._column(data, view, self.gateway, count)
        if gateways is None:
            gateways = repeat(None)
        elif not self.v6:  # the next hop cache keys on the gateway's bytes, as the kernel sent them
            gateways = repeat(_WORD.pack(next(gateways))) if type(gateways) is repeat else \
                [data[at:at + 4] for at in range(self.gateway, len(data), self.stride)]
        single_hop, entry = rtdecode._single_hop, rtdecode.entry
        if type(metrics) is repeat and type(oifs) is repeat and type(gateways) is repeat:
            entries = repeat(entry(next(metrics), single_hop(family, next(oifs), next(gateways), False)))
        else:
            seen: dict = {}
            entries = []
            for key in zip(metrics, oifs, gateways):
                found = seen.get(key)
                if found is None:
                    found = seen[key] = entry(key[0], single_hop(family, key[1], key[2], False))
                entries.append(found)
        lengths = data[17::self.stride]
        if self.dst is None:
            values = repeat(0)
        elif self.v6:
            values = [int.from_bytes(data[at:at + 16], "big") for at in range(self.dst, len(data), self.stride)]
        else:
            values = array("I", view[self.dst // 4::self.stride // 4])
            if sys.byteorder == "little":
                values.byteswap()  # network order to the address's value
        if self.v6:
            tag = prefix.V6_TAG
            return [(tag | plen << 128 | value >> (128 - plen), entry, delete)
                    for plen, value, entry, delete in zip(lengths, values, entries, deletes)]
        return [(plen << 32 | value >> (32 - plen), entry, delete)
                for plen, value, entry, delete in zip(lengths, values, entries, deletes)]
