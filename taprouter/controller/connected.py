"""The connected subnets on the router's ports, followed through route changes.

Host entries (a /32 or /128 per neighbour) depend on them: which subnets are
connected, and whether a more specific route inside one shadows a neighbour.
"""

from __future__ import annotations

from typing import Iterable, Mapping

from ..routing import prefix
from . import fib


class ConnectedSubnets:
    def __init__(self) -> None:
        self.by_prefix: dict[int, int] = {}  # connected prefix -> ifindex
        self._index: dict[tuple[bool, int], set[int]] = {}  # (IPv6, length) -> network bits

    def clear(self) -> None:
        self.by_prefix = {}
        self._index = {}

    def note(self, pk: int, ifindex: int) -> None:
        """Record a connected subnet without rebuilding the index (call reindex() after a batch)."""
        self.by_prefix[pk] = ifindex

    def reindex(self) -> None:
        index: dict[tuple[bool, int], set[int]] = {}
        for net in self.by_prefix:
            index.setdefault((prefix.is_v6(net), prefix.length(net)), set()).add(prefix.network(net))
        self._index = index

    def _set(self, pk: int, ifindex: int | None) -> None:
        if ifindex is None:
            self.by_prefix.pop(pk, None)
        else:
            self.by_prefix[pk] = ifindex
        self.reindex()

    def covers(self, pk: int) -> bool:
        """Whether pk lies strictly inside a connected subnet."""
        v6, length, net = prefix.is_v6(pk), prefix.length(pk), prefix.network(pk)
        for (net_v6, net_length), networks in self._index.items():
            if net_v6 == v6 and length > net_length and net >> (length - net_length) in networks:
                return True
        return False

    def track(self, dirty: Iterable[int], routes: Mapping[int, tuple]) -> bool:
        """Follow changed prefixes; True if host entries may change (a connected subnet came or
        went, or a route inside one can shadow its hosts)."""
        stale = False
        connected = self.by_prefix
        for pk in dirty:
            entry = routes.get(pk)
            if entry is not None:
                hops = entry[1]
                if hops and len(hops) == 1 and hops[0].gateway is None and fib.is_connected(hops):
                    if connected.get(pk) != hops[0].ifindex:
                        self._set(pk, hops[0].ifindex)
                        stale = True
                    continue
            if pk in connected:
                self._set(pk, None)
                stale = True
            elif self._index and not stale and self.covers(pk):
                stale = True
        return stale
