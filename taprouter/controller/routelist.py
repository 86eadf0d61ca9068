"""Kernel routes by prefix, a page at a time, for the control socket's /v1/routes (schema.RoutePage).

The mirror keeps routes in a dict keyed by packed prefix (taprouter.prefix), which has no order.
A page needs one: routes are listed by family, then prefix length, then address, which is the
packed ints' own order, so the routes of one length inside a prefix are one range of ints. The
index holds the mirror's prefixes sorted, in buckets of at most 65,536 (the packed int but its
low 16 bits): built by a loop that lets other threads run, and sorted a bucket at
a time, so building it never holds the GIL for long (one sorted() of a million ints held it
about 0.5 s here, a pause the packet relay would feel). A page is a bisect per prefix length
and bucket, then its rows; each row's entry is read live from the mirror.
"""

from __future__ import annotations

import bisect
import ipaddress
from dataclasses import dataclass
from typing import Iterable, Mapping

from .. import prefix

BUCKET_BITS = 16


def bucket(pk: int) -> int:
    """The bucket of a packed prefix: its int without the low BUCKET_BITS bits, so buckets are in
    the packed ints' order and hold at most 2 ** BUCKET_BITS prefixes each."""
    return pk >> BUCKET_BITS


@dataclass(frozen=True)
class RouteIndex:
    version: int  # the mirror's version it was built from
    keys: list[int]  # bucket ids, sorted
    buckets: dict[int, list[int]]  # bucket id -> its packed prefixes, sorted
    count: int = 0  # the prefixes it holds

    @classmethod
    def build(cls, prefixes: Iterable[int], version: int = 0) -> RouteIndex:
        buckets: dict[int, list[int]] = {}
        get = buckets.get
        for pk in prefixes:  # a Python loop on purpose: the interpreter switches threads within it
            found = get(pk >> BUCKET_BITS)
            if found is None:
                buckets[pk >> BUCKET_BITS] = [pk]
            else:
                found.append(pk)
        for found in buckets.values():
            found.sort()
        return cls(version, sorted(buckets), buckets, sum(map(len, buckets.values())))

    def __len__(self) -> int:
        return self.count

    def far_behind(self, routes: int) -> bool:
        """Whether a table of `routes` differs too much from this index to list from it while a new
        one is made (a table loading after the daemon started, or flushed)."""
        return abs(routes - self.count) > max(1000, self.count // 10)


def parse_cursor(text: str | None) -> int | None:
    """A cursor is the last prefix of the previous page, as text."""
    return None if not text else prefix.from_network(ipaddress.ip_network(text, strict=True))


def _ranges(within: int, after: int | None):
    """(lo, hi) packed-int ranges, one a prefix length, of the prefixes inside `within` that come
    after `after`, in listing order."""
    version = 6 if prefix.is_v6(within) else 4
    width, base = prefix.width(within), prefix.length(within)
    first, last = prefix.value(within), prefix.value(within) | ((1 << (width - base)) - 1)
    for length in range(base, width + 1):
        lo, hi = prefix.pack(version, first, length), prefix.pack(version, last, length)
        if after is not None:
            if after >= hi:
                continue
            lo = max(lo, after + 1)
        yield lo, hi


def page(index: RouteIndex, routes: Mapping[int, tuple], within: list[int], after: int | None,
         limit: int) -> tuple[list[tuple[int, tuple]], int | None]:
    """Up to `limit` (prefix, mirror entry) inside any of `within` (listed in that order) after the
    cursor, and the cursor of the next page (None: this was the last). A prefix the index holds
    that the mirror no longer does is left out."""
    rows: list[tuple[int, tuple]] = []
    keys, buckets = index.keys, index.buckets
    for net in within:
        if after is not None and prefix.is_v6(after) and not prefix.is_v6(net):
            continue  # the cursor is past every IPv4 prefix
        for lo, hi in _ranges(net, after if after is not None and prefix.is_v6(after) == prefix.is_v6(net)
                              else None):
            i, stop = bisect.bisect_left(keys, bucket(lo)), bisect.bisect_right(keys, bucket(hi))
            while i < stop:
                found = buckets[keys[i]]
                j = bisect.bisect_left(found, lo)
                while j < len(found) and found[j] <= hi:
                    pk = found[j]
                    entry = routes.get(pk)
                    if entry:
                        if len(rows) == limit:
                            return rows, rows[-1][0]
                        rows.append((pk, entry))
                    j += 1
                i += 1
    return rows, None
