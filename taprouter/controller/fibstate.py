"""The FIB as the switch holds it, kept up to date one changed prefix at a time.

A full table is a million routes; replanning it on every change would cost
seconds per change. FibState remembers, per prefix, what the switch holds (a
group id, or the kernel), and per hop set its groups, so a change costs
work in proportion to what changed. A full pass (all prefixes) happens only
on a new switch connection, a kernel re-dump, a change of the switch's ports,
or a hop set gaining or losing its last usable member.

Groups are shards: each holds at most fib.ROUTES_PER_GROUP routes. A route
keeps its group while it stays on the same hop set; after a restart, routes
keep the group the switch shows them using, so an unchanged kernel costs no
flow or group modification.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

from ..routing.model import KernelState, NeighbourKey
from . import fib
from .desired import PUNT
from .fib import KERNEL, GroupSpec, HopSet, PortBinding
from .pipeline import GROUP_MAX, GROUP_MIN
from .reconcile import GroupOp, Op

# What the switch holds for a prefix: a group id (> 0), PUNT (to the kernel), or UNKNOWN (a
# flow of ours in a form we do not write, to be overwritten). Prefixes punted because their
# hop set has no usable member are held as the hop set itself, so they move back onto
# groups when a member becomes usable.
UNKNOWN = -1


@dataclass(frozen=True)
class RouteOp:
    """A route flow to add, modify (keeping its counters) or delete; target a group id or PUNT."""

    op: Op
    pk: int
    target: int


@dataclass(frozen=True)
class Changes:
    group_upserts: list[GroupOp]
    routes: list[tuple[Op, int, int]]  # (op, prefix, target): RouteOp's fields, without the object
    group_deletes: list[GroupOp]
    full: bool

    def __bool__(self) -> bool:
        return bool(self.group_upserts or self.routes or self.group_deletes)


@dataclass
class _Hops:
    spec: GroupSpec | None  # None: no usable member
    groups: dict[int, int] = field(default_factory=dict)  # group id -> routes on it
    open: int = 0  # the group that last had room
    punted: int = 0  # prefixes sent to the kernel while no member is usable


def _wire(value) -> int | None:
    """What a held value means on the switch: a group id, PUNT, UNKNOWN or None (no flow)."""
    if value is None or type(value) is int:
        return value
    return PUNT  # a hop set without usable members


class FibState:
    def __init__(self) -> None:
        self.flows: dict[int, object] = {}  # prefix -> group id | PUNT | UNKNOWN | hop set
        self.switch_groups: dict[int, GroupSpec | None] = {}  # what the switch holds, by id
        self.unresolved: frozenset[NeighbourKey] = frozenset()
        self._hops: dict[HopSet, _Hops] = {}
        self._owner: dict[int, HopSet] = {}  # group id -> hop set
        self._ports: dict[int, PortBinding] | None = None
        self._classified: dict[tuple, HopSet | int] = {}
        self._connected: dict[int, int] = {}  # connected prefix -> ifindex
        self._connected_index: dict[tuple[int, int], set[int]] = {}
        self._hosts: dict[int, HopSet] = {}
        self._next_id = GROUP_MIN
        self._adopting = True
        self._held: dict[int, object] | None = None  # during a full pass: what the switch held
        self._new_hops = False

    def adopt(self, flows: Mapping[int, int], groups: Mapping[int, GroupSpec | None]) -> None:
        """Start again from what a switch holds (read back after it connected)."""
        self.flows = dict(flows)
        self.switch_groups = dict(groups)
        self._owner = {}
        self._hops = {}
        self._adopting = True

    # --- one pass -------------------------------------------------------------------------

    def sync(self, routes: Mapping[int, tuple], state: KernelState, ports: dict[int, PortBinding],
             dirty: Iterable[int], other: bool, full: bool, all_prefixes=None) -> Changes:
        """Bring the held FIB up to the kernel; returns what to send, in order.

        routes: the mirror's prefix -> (metric, hops, ...) entries. dirty: prefixes that changed
        since the last pass; other: links, neighbours or addresses changed; full: look at every
        prefix. all_prefixes: a callable giving the mirror's prefixes (under its lock).
        """
        full = full or self._adopting
        if not ports:
            routes = {}  # no switch port is a TAP yet: nothing to forward, so no FIB at all
        if ports != self._ports:
            self._ports = dict(ports)
            self._classified = {}
            full = True
        touched: set[int] = set()  # groups whose content may differ from the switch's
        if other or full:
            full |= self._refresh_hops(state, touched)
        if full:
            keys = set(all_prefixes() if all_prefixes is not None else routes)
            keys.update(self.flows)
            keys.update(self._hosts)
            dirty = keys
            self._rebuild_counts()
        # Host entries first: they depend on the connected subnets and on the routes around them.
        hosts_stale = self._track_connected(dirty, routes) or other or full
        if hosts_stale:
            hosts = fib.host_entries(state, self._ports, self._connected, routes)
            moved = [pk for pk in hosts.keys() | self._hosts.keys() if hosts.get(pk) != self._hosts.get(pk)]
            self._hosts = hosts
            if moved:
                dirty = set(dirty)
                dirty.update(moved)
        ops: list = []
        deletes: list = []
        emptied: set[int] = set()
        place = self._place
        for pk in dirty:
            place(pk, routes, state, ops, deletes, emptied, touched)
        upserts, group_deletes = self._group_ops(touched, emptied, full)
        if full or other or self._new_hops:
            self._unresolved(state)
        self._adopting = False
        self._held = None
        self._new_hops = False
        if len(self._classified) > 65536:
            self._classified = {}
        return Changes(upserts, ops + deletes, group_deletes, full)

    def _refresh_hops(self, state: KernelState, touched: set[int]) -> bool:
        """Recompute every hop set's group; True if one gained or lost its last usable member."""
        flipped = False
        for hopset, hops in self._hops.items():
            spec = fib.group_spec(hopset, state, self._ports)
            if spec != hops.spec:
                flipped |= (spec is None) != (hops.spec is None)
                hops.spec = spec
                touched.update(hops.groups)
        return flipped

    def _rebuild_counts(self) -> None:
        """Before a full pass: every prefix is placed again, counting from zero."""
        self._held = self.flows
        self.flows = {}
        for hops in self._hops.values():
            hops.groups = dict.fromkeys(hops.groups, 0)
            hops.punted = 0
            hops.open = 0
        self._connected = {}
        self._connected_index = {}

    def _track_connected(self, dirty: Iterable[int], routes: Mapping[int, tuple]) -> bool:
        """Follow the connected subnets through changed prefixes; True if host entries may change
        (a connected subnet came or went, or a route inside one can shadow its hosts)."""
        stale = False
        connected = self._connected
        for pk in dirty:
            entry = routes.get(pk)
            hops = entry[1] if entry is not None else None
            if fib.is_connected(hops):
                if connected.get(pk) != hops[0].ifindex:
                    self._set_connected(pk, hops[0].ifindex)
                    stale = True
            elif pk in connected:
                self._set_connected(pk, None)
                stale = True
            elif not stale and self._connected_index and self._in_connected(pk):
                stale = True
        return stale

    def _place(self, pk: int, routes, state: KernelState, ops: list, deletes: list, emptied: set[int],
               touched: set[int]) -> None:
        """Decide what the switch should hold for one prefix; record the flow op if it differs."""
        entry = routes.get(pk)
        if entry is not None:
            key = (entry[1], pk & 0x100)
            hopset = self._classified.get(key)
            if hopset is None:
                hopset = self._classified[key] = fib.classify(entry[1], bool(pk & 0x100), self._ports)
        else:
            hopset = self._hosts.get(pk)
        held = self._held
        if held is not None and pk in held:  # a full pass: what the switch held, not counted yet
            old = held.pop(pk)
            counted = False
        else:
            old = self.flows.get(pk)
            counted = True
        new = self._target(hopset, old, counted, state, touched)
        if counted and new is old:
            return
        if counted:
            self._release(old, emptied)
        if new is None:
            self.flows.pop(pk, None)
        else:
            self.flows[pk] = new
        before, after = _wire(old), _wire(new)
        if before != after:
            if after is None:
                deletes.append((Op.DELETE, pk, before))
            elif before is None or before == UNKNOWN:
                ops.append((Op.ADD, pk, after))
            else:
                ops.append((Op.MODIFY, pk, after))

    def _target(self, hopset, old, counted: bool, state: KernelState, touched: set[int]):
        """What to hold for a prefix of this hop set (None: no route), given what is held now."""
        if hopset is None:
            return None
        if hopset == KERNEL:
            return PUNT
        hops = self._hops.get(hopset)
        if hops is None:
            hops = self._hops[hopset] = _Hops(fib.group_spec(hopset, state, self._ports))
            self._new_hops = True
        if hops.spec is None:
            if counted and type(old) is tuple and old == hopset:
                return old
            hops.punted += 1
            return hopset
        if type(old) is int and old > 0:
            owner = self._owner.get(old)
            if owner == hopset:
                if counted:
                    return old  # unchanged: counts stay as they are
                if hops.groups.get(old, 0) < fib.ROUTES_PER_GROUP:
                    hops.groups[old] = hops.groups.get(old, 0) + 1
                    return old
            elif owner is None and old in self.switch_groups:
                # A group the switch has that no hop set claimed yet (after a restart): take it,
                # rewriting its content if the neighbours changed meanwhile.
                self._owner[old] = hopset
                hops.groups[old] = 1
                touched.add(old)
                return old
        return self._room(hopset, hops, touched)

    def _room(self, hopset: HopSet, hops: _Hops, touched: set[int]) -> int:
        gid = hops.open
        if gid and hops.groups.get(gid, fib.ROUTES_PER_GROUP) < fib.ROUTES_PER_GROUP:
            hops.groups[gid] += 1
            return gid
        for gid, count in hops.groups.items():
            if count < fib.ROUTES_PER_GROUP:
                hops.groups[gid] = count + 1
                hops.open = gid
                return gid
        gid = self._allocate()
        self._owner[gid] = hopset
        hops.groups[gid] = 1
        hops.open = gid
        touched.add(gid)
        return gid

    def _release(self, old, emptied: set[int]) -> None:
        if old is None or old == PUNT or old == UNKNOWN:
            return
        if type(old) is int:
            hopset = self._owner.get(old)
            if hopset is None:
                return
            hops = self._hops[hopset]
            hops.groups[old] -= 1
            if hops.groups[old] == 0:
                emptied.add(old)
        else:
            hops = self._hops[old]
            hops.punted -= 1
            if not hops.punted and not hops.groups:
                del self._hops[old]

    def _allocate(self) -> int:
        size = GROUP_MAX - GROUP_MIN + 1
        for _ in range(size):
            gid = self._next_id
            self._next_id = GROUP_MIN + (gid - GROUP_MIN + 1) % size
            if gid not in self._owner and gid not in self.switch_groups:
                return gid
        raise RuntimeError("taprouter's group id range is exhausted")

    # --- connected subnets (host entries depend on them) ----------------------------------------

    def _set_connected(self, pk: int, ifindex: int | None) -> None:
        if ifindex is None:
            self._connected.pop(pk, None)
        else:
            self._connected[pk] = ifindex
        index: dict[tuple[int, int], set[int]] = {}
        for net in self._connected:
            bits = 128 if net & 0x100 else 32
            length = net & 0xFF
            index.setdefault((net & 0x100, length), set()).add((net >> 9) >> (bits - length))
        self._connected_index = index

    def _in_connected(self, pk: int) -> bool:
        family, length = pk & 0x100, pk & 0xFF
        bits = 128 if family else 32
        for (net_family, net_length), values in self._connected_index.items():
            if net_family == family and length > net_length \
                    and (pk >> 9) >> (bits - net_length) in values:
                return True
        return False

    # --- groups ---------------------------------------------------------------------------

    def _group_ops(self, touched: set[int], emptied: set[int], full: bool) -> tuple[list, list]:
        upserts, deletes = [], []
        for gid in sorted(touched | emptied):
            hopset = self._owner.get(gid)
            if hopset is None:
                continue
            hops = self._hops[hopset]
            if hops.groups.get(gid, 0) == 0 or hops.spec is None:
                self._drop_group(gid, hopset, hops)
                continue
            have = self.switch_groups.get(gid, False)
            if have != hops.spec:
                upserts.append(GroupOp(Op.ADD if have is False else Op.MODIFY, gid, hops.spec))
                self.switch_groups[gid] = hops.spec
        if full:
            for hopset, hops in list(self._hops.items()):
                for gid, count in list(hops.groups.items()):
                    if count == 0 or hops.spec is None:
                        self._drop_group(gid, hopset, hops)
                if not hops.groups and not hops.punted:
                    self._hops.pop(hopset, None)
        for gid in sorted(self.switch_groups):
            if gid not in self._owner:
                deletes.append(GroupOp(Op.DELETE, gid, self.switch_groups[gid]))
        for op in deletes:
            del self.switch_groups[op.group_id]
        return upserts, deletes

    def _drop_group(self, gid: int, hopset: HopSet, hops: _Hops) -> None:
        hops.groups.pop(gid, None)
        self._owner.pop(gid, None)
        if hops.open == gid:
            hops.open = 0
        if not hops.groups and not hops.punted:
            self._hops.pop(hopset, None)

    def _unresolved(self, state: KernelState) -> None:
        result: set[NeighbourKey] = set()
        for hopset, hops in self._hops.items():
            if hops.groups or hops.punted:
                result |= fib.unresolved(hopset, state, self._ports)
        self.unresolved = frozenset(result)

    # --- reading ---------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        switched = sum(1 for value in self.flows.values() if type(value) is int and value > 0)
        return {"fib_entries": len(self.flows), "switched": switched, "to_kernel": len(self.flows) - switched,
                "hop_sets": len(self._hops), "groups": len(self._owner),
                "unresolved_next_hops": len(self.unresolved)}
