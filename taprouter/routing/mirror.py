"""The kernel mirror: keyed links, routes and neighbours; the latest value per key wins."""

from __future__ import annotations

import threading
from typing import Callable

from .. import gctune
from . import parse
from .rtnl import (RTM_DELADDR, RTM_DELLINK, RTM_DELNEIGH, RTM_DELROUTE, RTM_NEWADDR, RTM_NEWLINK, RTM_NEWNEIGH,
                   RTM_NEWROUTE)
from .. import prefix
from .model import Address, KernelState, Link, MirrorChanges, Neighbour, NeighbourKey, RouteKind

# A route entry: (metric, next hops or None when the kernel must judge it), best metric first;
# further metrics of the same prefix follow in the same flat tuple.
RouteEntry = tuple




class KernelMirror:
    """Thread-safe: the netlink thread writes, the reconciler takes snapshots and changes.

    Routes are kept compact for full tables: `routes` maps a packed prefix
    (taprouter.prefix) to a flat tuple (metric, hops, metric, hops, ...), best
    metric first. The reconciler reads it without the lock (single dict reads
    are atomic) and learns what to look at from `take_changes`.

    `on_change` is called (from the writer's thread) after every change, so the
    consumer can wake up; it coalesces bursts itself.
    """

    def __init__(self, on_change: Callable[[], None] = lambda: None):
        self._lock = threading.Lock()
        self._links: dict[int, Link] = {}
        self.routes: dict[int, RouteEntry] = {}
        self._dirty: dict[int, RouteEntry | None] = {}
        self._other_dirty = False
        self._full = True
        self._withdrawn = False
        self._gone: list[int] = []
        self._neighbours: dict[NeighbourKey, Neighbour] = {}
        self._addresses: set[Address] = set()
        self._on_change = on_change
        self._routes_peak = 0  # gctune.compacted
        # Bumped by every change to `routes`: readers that keep something made from them (the
        # control socket's route index) learn when it is stale.
        self.version = 0

    def notify(self) -> None:
        """Wake the consumer without a change (once the first dump is complete)."""
        self._on_change()

    def snapshot(self) -> KernelState:
        """Links, neighbours and addresses (routes stay in `routes`: a million do not copy cheaply)."""
        with self._lock:
            return KernelState(dict(self._links), dict(self._neighbours), frozenset(self._addresses))

    def take_changes(self) -> MirrorChanges:
        """What changed since the last call. Each changed prefix with a route comes with its entry
        as of its last change: the reconciler takes them from here rather than look each up again in
        `routes` (a random lookup in a million-entry dict is a cache miss, the largest cost
        left per route). A later change is in the next call's."""
        with self._lock:
            taken = MirrorChanges(self._dirty, self._other_dirty, self._full, self._withdrawn, self._gone)
            self._dirty, self._other_dirty, self._full, self._withdrawn = {}, False, False, False
            self._gone = []
        return taken

    def items(self) -> list[tuple[int, RouteEntry]]:
        """Every (prefix, entry), taken under the lock: a full pass iterates them."""
        with self._lock:
            return list(self.routes.items())

    def replace(self, links: list, routes: list[tuple], neighbours: list, addresses: list) -> None:
        """Install a full dump, dropping every entry it does not contain (resync after overflow).

        Routes come as (prefix, (metric, hops)) pairs, as netlink.dump_routes gives them; the
        rest as pyroute2 messages.
        """
        new_links = {l.index: l for l in map(parse.link, links)}
        new_routes: dict[int, RouteEntry] = dict(routes)  # at C speed: a dump is a million routes
        if len(new_routes) != len(routes):  # a prefix with several metrics: merge its entries
            new_routes = {}
            for pk, (metric, hops) in routes:
                current = new_routes.get(pk)
                new_routes[pk] = (metric, hops) if current is None else _with(current, metric, hops)
        new_neighbours = {n.key: n for n in map(parse.neighbour, neighbours) if n is not None}
        new_addresses = {a for a in map(parse.address, addresses) if a is not None}
        with self._lock:
            self._links, self.routes, self._neighbours = new_links, new_routes, new_neighbours
            self._addresses = new_addresses
            self._dirty, self._withdrawn, self._gone = {}, False, []
            self._other_dirty = self._full = True
            self.version += 1
        self._on_change()

    def apply(self, msg) -> bool:
        """Apply one rtnetlink event; True if it changed the mirror."""
        kind = msg["header"]["type"]
        if kind in (RTM_NEWROUTE, RTM_DELROUTE):  # the watcher decodes routes narrowly; tests come here
            route = parse.route(msg)
            if route is None:
                return False
            hops = route.nexthops if route.kind is RouteKind.UNICAST else None
            return self.apply_routes([(prefix.from_network(route.dst), (route.metric, hops),
                                       kind == RTM_DELROUTE)]) > 0
        changed = False
        with self._lock:
            if kind in (RTM_NEWLINK, RTM_DELLINK):
                item = parse.link(msg)
                changed = self._set(self._links, item.index, item, kind == RTM_DELLINK)
            elif kind in (RTM_NEWADDR, RTM_DELADDR):
                address = parse.address(msg)
                if address is not None:
                    present = address in self._addresses
                    if kind == RTM_NEWADDR and not present:
                        self._addresses.add(address)
                        changed = True
                    elif kind == RTM_DELADDR and present:
                        self._addresses.discard(address)
                        changed = True
            elif kind in (RTM_NEWNEIGH, RTM_DELNEIGH):
                neighbour = parse.neighbour(msg)
                if neighbour is not None:
                    changed = self._set(self._neighbours, neighbour.key, neighbour, kind == RTM_DELNEIGH)
            if changed:
                self._other_dirty = True
        if changed:
            self._on_change()
        return changed

    def apply_routes(self, events: list[tuple[int, RouteEntry, bool]]) -> int:
        """Apply decoded route events (prefix, (metric, hops), delete) in order; returns how many changed.

        One lock and one wake-up per batch: a full-table load brings thousands per batch.
        """
        changed = withdrawn = 0
        with self._lock:
            # Under the lock: take_changes swaps in a new dirty map, and a prefix marked in the
            # map it already took would never be looked at.
            routes, dirty = self.routes, self._dirty
            get, pop = routes.get, routes.pop
            gone = self._gone.append
            for pk, entry, delete in events:
                if delete:
                    # Taken out at once: a withdrawal's million find their entries in one lookup.
                    current = pop(pk, None)
                    if current is None:
                        continue
                    new = None
                    if len(current) != 2 or current[0] != entry[0]:  # not its only metric
                        new = _without(current, entry[0])
                        if new:
                            routes[pk] = new
                        if new is current:
                            continue
                    if new:
                        dirty[pk] = new
                    else:
                        if dirty:  # an earlier change of this window is stale now
                            dirty.pop(pk, None)
                        gone(pk)
                    withdrawn += 1
                    continue
                current = get(pk)
                if current is None:
                    routes[pk] = dirty[pk] = entry
                elif current == entry:
                    continue
                else:
                    routes[pk] = dirty[pk] = _with(current, entry[0], entry[1])
                changed += 1
            if withdrawn:
                self._withdrawn = True
                changed += withdrawn
            if changed:
                self.version += 1
            self.routes, self._routes_peak = gctune.compacted(routes, self._routes_peak)
        if changed:
            self._on_change()
        return changed

    @staticmethod
    def _set(table: dict, key, value, delete: bool) -> bool:
        if delete:
            return table.pop(key, None) is not None
        if table.get(key) == value:
            return False
        table[key] = value
        return True


def _with(entry: RouteEntry, metric: int, hops) -> RouteEntry:
    """entry with (metric, hops) set, kept sorted by metric."""
    if entry[0] == metric and len(entry) == 2:
        return (metric, hops)
    pairs = {entry[i]: entry[i + 1] for i in range(0, len(entry), 2)}
    pairs[metric] = hops
    return tuple(x for m in sorted(pairs) for x in (m, pairs[m]))


def _without(entry: RouteEntry, metric: int) -> RouteEntry:
    """entry without that metric; the same object if it had none, () if nothing is left."""
    for i in range(0, len(entry), 2):
        if entry[i] == metric:
            return entry[:i] + entry[i + 2:]
    return entry
