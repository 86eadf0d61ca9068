"""The connected subnets on the router's ports, followed through route changes.

Host entries (a /32 or /128 per neighbour) depend on them: which subnets are
connected, and whether a more specific route inside one shadows a neighbour.
"""

from __future__ import annotations

from ... import prefix
from . import fib

_V6_TAG = prefix.V6_TAG
_LOW32, _LOW128 = (1 << 32) - 1, (1 << 128) - 1


class ConnectedSubnets:
    def __init__(self) -> None:
        self.by_prefix: dict[int, int] = {}  # connected prefix -> ifindex
        # Per family, (length, network bits) of the connected subnets: the test a million routes
        # go through during a load, so it is plain tuples and sets.
        self._v4: list[tuple[int, set[int]]] = []
        self._v6: list[tuple[int, set[int]]] = []
        # The shortest connected length per family: no prefix as short as that lies inside one,
        # which settles most routes of a full table without a call.
        self._v4_shortest, self._v6_shortest = 32, 128

    def clear(self) -> None:
        self.by_prefix = {}
        self._v4, self._v6 = [], []
        self._v4_shortest, self._v6_shortest = 32, 128

    def note(self, pk: int, hops) -> bool:
        """A full pass's `changed`: record a connected subnet without rebuilding the index (call
        reindex() after the pass, whose host entries are made afresh: False)."""
        if hops and hops[0].gateway is None and fib.is_connected(hops):
            self.by_prefix[pk] = hops[0].ifindex
        return False

    def reindex(self) -> None:
        index: dict[tuple[bool, int], set[int]] = {}
        for net in self.by_prefix:
            index.setdefault((prefix.is_v6(net), prefix.length(net)), set()).add(prefix.network(net))
        self._v4 = [(length, nets) for (v6, length), nets in sorted(index.items()) if not v6]
        self._v6 = [(length, nets) for (v6, length), nets in sorted(index.items()) if v6]
        self._v4_shortest = self._v4[0][0] if self._v4 else 32
        self._v6_shortest = self._v6[0][0] if self._v6 else 128

    def _set(self, pk: int, ifindex: int | None) -> None:
        if ifindex is None:
            self.by_prefix.pop(pk, None)
        else:
            self.by_prefix[pk] = ifindex
        self.reindex()

    def covers(self, pk: int) -> bool:
        """Whether pk lies strictly inside a connected subnet."""
        if pk >= _V6_TAG:
            length, net, index = (pk >> 128) & 0xFF, pk & _LOW128, self._v6
        else:
            length, net, index = pk >> 32, pk & _LOW32, self._v4
        for net_length, networks in index:
            if length > net_length and net >> (length - net_length) in networks:
                return True
        return False

    def changed(self, pk: int, hops) -> bool:
        """Follow one changed prefix (hops: its best route's next hops, or None if it has no route);
        True if host entries may change: a connected subnet came or went, or a route inside one can
        shadow its hosts.

        FibState's pass calls it for the prefixes `shortest` and `by_prefix` do not rule out, on its way
        through the changed prefixes: a second walk would look up each one's route again, a
        cache miss per prefix of a full table."""
        if hops and hops[0].gateway is None and len(hops) == 1 and fib.is_connected(hops):
            if self.by_prefix.get(pk) != hops[0].ifindex:
                self._set(pk, hops[0].ifindex)
                return True
            return False
        if pk in self.by_prefix:
            self._set(pk, None)
            return True
        return self.covers(pk)

    def shortest(self) -> tuple[int, int]:
        """The shortest connected length, IPv4 and IPv6: no prefix as short lies inside one."""
        return self._v4_shortest, self._v6_shortest
