"""Route-flow entries of one shape in a flow-stats block, decoded a column at a time.

A restart reads back every flow on the switch: a full table is a million route
flows in blocks of some 700 entries (one reply message each), nearly all of
one shape. readback decodes them an entry at a time for about 1.7 µs each (a
struct unpack, a dozen comparisons, a tuple): 1.7 s of a restart. Entries of
one shape sit at a fixed stride, so, as in routing/rtcolumns, what every entry
must hold (its length, table, cookie, match and instruction headers) is
checked a column at a time for the whole block, in C, and what varies
(priority, address, mask, group) comes out as columns.

The layout comes from the same struct format readback's entry decoder
unpacks, so both read the same bytes and ignore the same ones (durations,
counters, timeouts, flags, padding). A block holding anything else (another
shape, another cookie, host bits, a mask that is not the priority's, group 0)
returns None and readback takes it an entry at a time; tests check both agree.
"""

from __future__ import annotations

import struct
import sys
from array import array
from itertools import repeat
from operator import or_
from typing import Callable

from ... import prefix

_SIZES = {"x": 1, "B": 1, "H": 2, "I": 4, "Q": 8}
_CODES = {2: "H", 4: "I", 8: "Q"}
if any(array(code).itemsize != size for size, code in _CODES.items()):
    raise ImportError("readcolumns: array item sizes differ from struct's")
_SWAP = sys.byteorder == "little"  # columns come in network order

Columns = Callable[[bytes], "tuple[list[int], object] | None"]


def fields(fmt: str) -> list[tuple[int, int]]:
    """(offset, size) of each field of a big-endian struct format of x, B, H, I and Q (with counts)."""
    out: list[tuple[int, int]] = []
    offset, count = 0, ""
    for code in fmt.lstrip("!"):
        if code.isdigit():
            count += code
            continue
        n, count = int(count or 1), ""
        if code == "x":
            offset += n
            continue
        for _ in range(n):
            out.append((offset, _SIZES[code]))
            offset += _SIZES[code]
    if offset != struct.calcsize(fmt):
        raise ValueError(f"format {fmt!r} is not one readcolumns can lay out")
    return out


def plan(fmt: str, const: dict[int, int], priority: int, value: list[int], mask: list[int],
         target: int | None, version: int, base: int, punt: int) -> Columns:
    """The column decoder of entries laid out as `fmt`, which covers a whole entry.

    Arguments name fields by their index in `fmt`: const maps those every entry must hold to
    their value; value and mask are the destination's words (one for IPv4, two halves for
    IPv6; no mask: a full-length prefix); target is the group id (None: `punt` for all).
    The decoder gives (prefix keys, targets) for a block of whole entries, or None.
    """
    layout = fields(fmt)
    stride = struct.calcsize(fmt)
    width = 32 if version == 4 else 128
    known = bytearray(stride)
    cared = [False] * stride
    for index, expected in const.items():
        offset, size = layout[index]
        known[offset:offset + size] = expected.to_bytes(size, "big")
        cared[offset:offset + size] = [True] * size
    # Aligned words every entry holds whole are compared four bytes at a time, the rest a byte at a time.
    words = tuple((at // 4, bytes(known[at:at + 4])) for at in range(0, stride - 3, 4)
                  if all(cared[at:at + 4])) if stride % 4 == 0 else ()
    in_words = {w * 4 + i for w, _ in words for i in range(4)}
    single = tuple((at, bytes(known[at:at + 1])) for at in range(stride) if cared[at] and at not in in_words)
    return _Decoder(stride, words, single, layout[priority], [layout[i] for i in value],
                    [layout[i] for i in mask], None if target is None else layout[target],
                    version, width, base, punt).decode


class _Decoder:
    def __init__(self, stride, words, single, priority, value, mask, target, version, width, base, punt) -> None:
        self.stride, self.words, self.single = stride, words, single
        self.priority, self.value, self.mask, self.target = priority, value, mask, target
        self.v6, self.width, self.base, self.punt = version == 6, width, base, punt
        self.tag = prefix.V6_TAG if version == 6 else 0
        full = (1 << width) - 1
        self.masks = [full ^ (full >> plen) for plen in range(width + 1)]

    def decode(self, data: bytes) -> tuple[list[int], object] | None:
        stride = self.stride
        count, rest = divmod(len(data), stride)
        if rest or not count:
            return None
        if self.words:
            view = memoryview(data).cast("I")
            step = stride // 4
            for index, word in self.words:
                if view[index::step].tobytes() != word * count:
                    return None
        for at, byte in self.single:
            if data[at::stride] != byte * count:
                return None
        plens = [p - self.base for p in _column(data, *self.priority, stride, count)]
        if min(plens) < 0 or max(plens) > self.width:
            return None
        values = self._address(data, self.value, count)
        width, tag = self.width, self.tag  # keys as prefix.pack makes them
        if not self.mask:
            if plens.count(width) != count:
                return None
            keys = [tag | width << width | v for v in values]
        else:
            masks, expected = self._address(data, self.mask, count), self.masks
            # No host bits: value | mask == mask, mapped in C rather than tested in a Python loop.
            if masks != [expected[p] for p in plens] or list(map(or_, values, masks)) != masks:
                return None
            keys = [tag | p << width | v >> (width - p) for p, v in zip(plens, values)]
        if self.target is None:
            return keys, repeat(self.punt, count)
        targets = _column(data, *self.target, stride, count)
        if self.punt in targets:  # group 0 would read as the punt form
            return None
        return keys, targets

    def _address(self, data: bytes, words: list[tuple[int, int]], count: int) -> list[int]:
        if not self.v6:
            return _column(data, *words[0], self.stride, count).tolist()
        high, low = (_column(data, offset, size, self.stride, count) for offset, size in words)
        return [h << 64 | l for h, l in zip(high, low)]


def _column(data: bytes, offset: int, size: int, stride: int, count: int) -> array:
    """One field of every entry, as unsigned integers: its bytes gathered a byte column at a time."""
    gathered = bytearray(size * count)
    for i in range(size):
        gathered[i::size] = data[offset + i::stride]
    column = array(_CODES[size], gathered)
    if _SWAP:
        column.byteswap()
    return column
