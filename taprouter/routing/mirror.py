"""The kernel mirror: keyed links, routes and neighbours; the latest value per key wins."""

from __future__ import annotations

import threading
from typing import Callable

from . import parse
from .model import Address, KernelState, Link, Neighbour, NeighbourKey, Route, RouteKey

RTM_NEWLINK, RTM_DELLINK = 16, 17
RTM_NEWADDR, RTM_DELADDR = 20, 21
RTM_NEWROUTE, RTM_DELROUTE = 24, 25
RTM_NEWNEIGH, RTM_DELNEIGH = 28, 29


class KernelMirror:
    """Thread-safe: the netlink thread writes, the reconciler takes snapshots.

    `on_change` is called (from the writer's thread) after every change, so the
    consumer can wake up; it coalesces bursts itself.
    """

    def __init__(self, on_change: Callable[[], None] = lambda: None):
        self._lock = threading.Lock()
        self._links: dict[int, Link] = {}
        self._routes: dict[RouteKey, Route] = {}
        self._neighbours: dict[NeighbourKey, Neighbour] = {}
        self._addresses: set[Address] = set()
        self._on_change = on_change
        self.version = 0

    def notify(self) -> None:
        """Wake the consumer without a change (once the first dump is complete)."""
        self._on_change()

    def snapshot(self) -> KernelState:
        with self._lock:
            return KernelState(dict(self._links), dict(self._routes), dict(self._neighbours),
                               frozenset(self._addresses))

    def replace(self, links: list, routes: list[Route], neighbours: list, addresses: list) -> None:
        """Install a full dump, dropping every entry it does not contain (resync after overflow).

        Routes come already decoded (by the narrow decoder); the rest as pyroute2 messages.
        """
        new_links = {l.index: l for l in map(parse.link, links)}
        new_routes = {r.key: r for r in routes}
        new_neighbours = {n.key: n for n in map(parse.neighbour, neighbours) if n is not None}
        new_addresses = {a for a in map(parse.address, addresses) if a is not None}
        with self._lock:
            self._links, self._routes, self._neighbours = new_links, new_routes, new_neighbours
            self._addresses = new_addresses
            self.version += 1
        self._on_change()

    def apply(self, msg) -> bool:
        """Apply one rtnetlink event; True if it changed the mirror."""
        kind = msg["header"]["type"]
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
            elif kind in (RTM_NEWROUTE, RTM_DELROUTE):
                route = parse.route(msg)
                if route is not None:
                    changed = self._set(self._routes, route.key, route, kind == RTM_DELROUTE)
            elif kind in (RTM_NEWNEIGH, RTM_DELNEIGH):
                neighbour = parse.neighbour(msg)
                if neighbour is not None:
                    changed = self._set(self._neighbours, neighbour.key, neighbour, kind == RTM_DELNEIGH)
            if changed:
                self.version += 1
        if changed:
            self._on_change()
        return changed

    def apply_route(self, route: Route, delete: bool) -> bool:
        """Apply one decoded route event; True if it changed the mirror."""
        with self._lock:
            changed = self._set(self._routes, route.key, route, delete)
            if changed:
                self.version += 1
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
