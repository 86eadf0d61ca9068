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

from dataclasses import dataclass
from typing import Iterable, Mapping

from ..routing.model import KernelState, NeighbourKey
from ..routing.prefix import V6_TAG
from . import fib
from .connected import ConnectedSubnets
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
class Changes:
    group_upserts: list[GroupOp]
    routes: list[tuple[Op, int, int]]  # (op, prefix, group id or PUNT): a million of them, so no objects
    group_deletes: list[GroupOp]
    full: bool
    counts: tuple[int, int, int] = (0, 0, 0)  # route flows added, modified, deleted (the log's figures)
    deleted_with_groups: int = 0  # route flows the group deletes take with them (not in routes)

    def __bool__(self) -> bool:
        return bool(self.group_upserts or self.routes or self.group_deletes)


class _Hops:
    """One hop set: its group content and its groups. Identity matters: prefixes, group owners
    and the classification cache point at the record itself, so the hot path never hashes a hop
    set (hashing next hops and addresses costs microseconds)."""

    __slots__ = ("hopset", "spec", "groups", "open", "punted", "alive")

    def __init__(self, hopset: HopSet, spec: GroupSpec | None) -> None:
        self.hopset = hopset
        self.spec = spec  # None: no usable member
        self.groups: dict[int, int] = {}  # group id -> routes on it
        self.open = 0  # the group that last had room
        self.punted = 0  # prefixes sent to the kernel while no member is usable
        self.alive = True


class FibState:
    def __init__(self) -> None:
        self.flows: dict[int, object] = {}  # prefix -> group id | PUNT | UNKNOWN | _Hops (punted)
        self.switch_groups: dict[int, GroupSpec | None] = {}  # what the switch holds, by id
        self.unresolved: frozenset[NeighbourKey] = frozenset()
        self._hops: dict[HopSet, _Hops] = {}
        self._owner: dict[int, _Hops] = {}  # group id -> its hop set
        self._ports: dict[int, PortBinding] | None = None
        self._classified: dict[int, tuple] = {}  # id(hops) * 2 + v6 -> (hops, _Hops or KERNEL)
        self._connected = ConnectedSubnets()
        self._hosts: dict[int, HopSet] = {}
        self._next_id = GROUP_MIN
        self._adopting = True
        self._held: dict[int, object] | None = None  # during a full pass: what the switch held
        self._hops_changed = False

    def adopt(self, flows: Mapping[int, int], groups: Mapping[int, GroupSpec | None]) -> None:
        """Start again from what a switch holds (read back after it connected)."""
        self.flows = dict(flows)
        self.switch_groups = dict(groups)
        self._owner = {}
        for hops in self._hops.values():
            hops.alive = False
        self._hops = {}
        self._classified = {}
        self._adopting = True

    # --- one pass -------------------------------------------------------------------------

    def sync(self, routes: Mapping[int, tuple], state: KernelState, ports: dict[int, PortBinding],
             dirty: Iterable[int], other: bool, full: bool, all_prefixes=None) -> Changes:
        """Bring the held FIB up to the kernel; returns what to send, in order.

        routes: the mirror's prefix -> (metric, hops, ...) entries. dirty: prefixes that changed
        since the last pass; other: links, neighbours or addresses changed; full: look at every
        prefix. all_prefixes: a callable giving the mirror's (prefix, entry) items (under its lock).
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
        adds: list = []
        modifies: list = []
        deletes: list = []
        emptied: set[int] = set()
        lookup = routes  # where the last _place call looks the prefixes' routes up
        if full:
            self._rebuild_counts()
            items = all_prefixes() if all_prefixes is not None else list(routes.items())
            self._place_every(items, state, adds, modifies, touched)
            # What is left: prefixes the switch holds that are no longer routes, and host entries.
            self._hosts = fib.host_entries(state, self._ports, self._connected.by_prefix, routes)
            dirty = set(self._held)
            dirty.update(pk for pk in self._hosts if pk not in routes)
        else:
            # Prefixes with a route first, following the connected subnets on the way; the rest
            # (withdrawn routes, host entries) once the host entries are up to date, as they
            # depend on the connected subnets and on the routes around them.
            rest: list[int] = []
            stale = self._place(dirty, routes, state, adds, modifies, deletes, emptied, touched, rest)
            # They had no route a moment ago: no need to look each up again (a withdrawal's million).
            dirty, lookup = rest, None
            if stale or other:
                hosts = fib.host_entries(state, self._ports, self._connected.by_prefix, routes)
                moved = [pk for pk in hosts.keys() | self._hosts.keys() if hosts.get(pk) != self._hosts.get(pk)]
                self._hosts = hosts
                if moved:  # one with a route was placed above, and placing it again changes nothing
                    dirty, lookup = set(rest), routes
                    dirty.update(moved)
        if lookup is None:
            self._withdraw(dirty, state, adds, modifies, deletes, emptied, touched)
        else:
            self._place(dirty, lookup, state, adds, modifies, deletes, emptied, touched)
        upserts, group_deletes = self._group_ops(touched, emptied, full)
        with_groups = 0
        if group_deletes and deletes:
            # Deleting a group deletes every flow that forwards to it (OpenFlow 1.3), and Open
            # vSwitch 3.1 does that far cheaper than flow by flow: 1M route flows went with their
            # 977 groups in 1.6 s, against 13-25 s as single deletes in bundles (shuffled order).
            # A withdrawal's later passes, behind the kernel, empty whole groups.
            gone = {op.group_id for op in group_deletes}
            kept = [op for op in deletes if op[2] not in gone]
            with_groups, deletes = len(deletes) - len(kept), kept
        if full or other or self._hops_changed:
            self._unresolved(state)
        self._adopting = False
        self._held = None
        self._hops_changed = False
        if len(self._classified) > 65536:
            self._classified = {}
        return Changes(upserts, adds + modifies + deletes, group_deletes, full,
                       (len(adds), len(modifies), len(deletes)), with_groups)

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
            # A group keeps its owner through the pass; it goes at the end if nothing uses it.
            hops.groups = dict.fromkeys(hops.groups, 0)
            hops.punted = 0
            hops.open = 0
        self._connected.clear()

    def _place_every(self, items: list, state: KernelState, adds: list, modifies: list,
                     touched: set[int]) -> None:
        """A full pass over every (prefix, entry) of the kernel, against what the switch held.

        The restart path: a million prefixes, most of them already right on the switch, so the
        loop is _place's cases for a route, inline, with connected subnets noted on the way.
        """
        classified, held, owner, flows = self._classified, self._held, self._owner, self.flows
        switch_groups = self.switch_groups
        limit = fib.ROUTES_PER_GROUP
        add_op, modify_op = adds.append, modifies.append
        ADD, MODIFY = Op.ADD, Op.MODIFY
        for pk, entry in items:
            hops = entry[1]
            if hops is None:
                record = KERNEL
            else:
                if hops and hops[0].gateway is None and fib.is_connected(hops):
                    self._connected.note(pk, hops[0].ifindex)
                v6 = pk >> 136  # prefix.V6_TAG: 1 for IPv6, 0 for IPv4
                cached = classified.get(id(hops) * 2 + v6)
                if cached is not None and cached[0] is hops:
                    record = cached[1]
                else:
                    record = self._classify(hops, v6, state)
            old = held.pop(pk, None)
            if record is KERNEL:
                new = PUNT
            else:
                if not record.alive:
                    record = self._record(record.hopset, state)
                if record.spec is None:
                    record.punted += 1
                    new = record
                elif type(old) is int and old > 0 and owner.get(old) is record \
                        and record.groups.get(old, 0) < limit:
                    record.groups[old] = record.groups.get(old, 0) + 1
                    new = old
                elif type(old) is int and old > 0 and old not in owner and old in switch_groups:
                    owner[old] = record
                    record.groups[old] = 1
                    touched.add(old)
                    new = old
                else:
                    new = self._room(record, touched)
            flows[pk] = new
            before = old if old is None or type(old) is int else PUNT
            after = new if type(new) is int else PUNT
            if before != after:
                if before is None or before == UNKNOWN:
                    add_op((ADD, pk, after))
                else:
                    modify_op((MODIFY, pk, after))
        self._connected.reindex()

    def _record(self, hopset: HopSet, state: KernelState) -> _Hops:
        hops = self._hops.get(hopset)
        if hops is None:
            hops = self._hops[hopset] = _Hops(hopset, fib.group_spec(hopset, state, self._ports))
            self._hops_changed = True
        return hops

    def _classify(self, hops, v6: int, state: KernelState):
        hopset = fib.classify(hops, bool(v6), self._ports)
        record = KERNEL if hopset == KERNEL else self._record(hopset, state)
        self._classified[id(hops) * 2 + v6] = (hops, record)
        return record

    def _place(self, dirty: Iterable[int], routes, state: KernelState, adds: list, modifies: list,
               deletes: list, emptied: set[int], touched: set[int], rest: list[int] | None = None) -> bool:
        """Decide what the switch should hold for each prefix; record the flow ops that differ.

        With `rest`, a prefix without a route goes there instead, unplaced, and every prefix
        goes past the connected subnets; returns whether host entries may have changed.

        The hot loop of a full-table load: a million iterations, so the common cases are inline.
        """
        classified, flows, held, hosts, owner = self._classified, self.flows, self._held, self._hosts, self._owner
        limit = fib.ROUTES_PER_GROUP
        add_op, modify_op, delete_op = adds.append, modifies.append, deletes.append
        ADD, MODIFY, DELETE = Op.ADD, Op.MODIFY, Op.DELETE
        # Which prefixes ConnectedSubnets.changed can say anything for: connected routes, now or
        # before, and prefixes longer than the shortest connected subnet. The lengths may go stale
        # as subnets change in the loop, but a subnet changing makes the pass stale already, and
        # then only connected routes matter.
        connected = self._connected
        by_prefix, v4_shortest, v6_shortest = connected.by_prefix, *connected.shortest()
        stale = False
        for pk in dirty:
            entry = routes.get(pk)
            if rest is not None:
                hops = None if entry is None else entry[1]
                if (hops and hops[0].gateway is None) or pk in by_prefix or (
                        pk >> 32 > v4_shortest if pk < V6_TAG else (pk >> 128) & 0xFF > v6_shortest):
                    stale |= connected.changed(pk, hops)
                if entry is None:
                    rest.append(pk)
                    continue
            if entry is not None:
                hops = entry[1]
                if hops is None:
                    record = KERNEL
                else:
                    v6 = pk >> 136
                    cached = classified.get(id(hops) * 2 + v6)
                    if cached is not None and cached[0] is hops:
                        record = cached[1]
                    else:
                        record = self._classify(hops, v6, state)
            else:
                hopset = hosts.get(pk)
                record = None if hopset is None else self._record(hopset, state)
            if held is not None and pk in held:  # a full pass: what the switch held, not counted yet
                old = held.pop(pk)
                counted = False
            else:
                old = flows.get(pk)
                counted = True

            if record is None:
                new = None
            elif record is KERNEL:
                new = PUNT
            else:
                if not record.alive:  # dropped while the cache still named it
                    record = self._record(record.hopset, state)
                if record.spec is None:
                    if counted and old is record:
                        continue
                    record.punted += 1
                    new = record
                elif type(old) is int and old > 0 and owner.get(old) is record:
                    if counted:
                        continue  # unchanged: counts stay as they are
                    count = record.groups.get(old, 0)
                    if count < limit:
                        record.groups[old] = count + 1
                        new = old
                    else:
                        new = self._room(record, touched)
                elif type(old) is int and old > 0 and old not in owner and old in self.switch_groups:
                    # A group the switch has that no hop set claimed yet (after a restart): take it,
                    # rewriting its content if the neighbours changed meanwhile.
                    owner[old] = record
                    record.groups[old] = 1
                    touched.add(old)
                    new = old
                else:
                    gid = record.open
                    count = record.groups.get(gid, limit)
                    if count < limit:
                        record.groups[gid] = count + 1
                        new = gid
                    else:
                        new = self._room(record, touched)
            if counted:
                if new is old:
                    continue
                if old is not None and old != PUNT and old != UNKNOWN:
                    self._release(old, emptied)
            if new is None:
                flows.pop(pk, None)
            else:
                flows[pk] = new
            before = old if old is None or type(old) is int else PUNT
            after = new if new is None or type(new) is int else PUNT
            if before != after:
                if after is None:
                    delete_op((DELETE, pk, before))
                elif before is None or before == UNKNOWN:
                    add_op((ADD, pk, after))
                else:
                    modify_op((MODIFY, pk, after))
        return stale

    def _withdraw(self, gone: list[int], state: KernelState, adds: list, modifies: list, deletes: list,
                  emptied: set[int], touched: set[int]) -> None:
        """_place for prefixes that have no route: their flows go, unless they are host entries.

        A withdrawal's million come this way: _place's case for them, inline, one lookup each.
        """
        flows, hosts, owner = self.flows, self._hosts, self._owner
        delete_op, DELETE = deletes.append, Op.DELETE
        hosted = []
        for pk in gone:
            if pk in hosts:
                hosted.append(pk)
                continue
            old = flows.pop(pk, None)
            if old is None:
                continue
            if type(old) is not int:  # punted, counted on its hop set
                self._release(old, emptied)
                old = PUNT
            elif old > 0:  # a group's; PUNT and UNKNOWN count nowhere
                hops = owner.get(old)
                if hops is not None:
                    count = hops.groups[old] - 1
                    hops.groups[old] = count
                    if not count:
                        emptied.add(old)
            delete_op((DELETE, pk, old))
        if hosted:
            self._place(hosted, {}, state, adds, modifies, deletes, emptied, touched)

    def _room(self, hops: _Hops, touched: set[int]) -> int:
        for gid, count in hops.groups.items():
            if count < fib.ROUTES_PER_GROUP:
                hops.groups[gid] = count + 1
                hops.open = gid
                return gid
        gid = self._allocate()
        self._owner[gid] = hops
        hops.groups[gid] = 1
        hops.open = gid
        touched.add(gid)
        return gid

    def _release(self, old, emptied: set[int]) -> None:
        if type(old) is int:
            hops = self._owner.get(old)
            if hops is None:
                return
            hops.groups[old] -= 1
            if hops.groups[old] == 0:
                emptied.add(old)
        else:
            old.punted -= 1
            if not old.punted and not old.groups:
                self._forget(old)

    def _forget(self, hops: _Hops) -> None:
        if self._hops.get(hops.hopset) is hops:
            del self._hops[hops.hopset]
            self._hops_changed = True  # its next hops may no longer need resolving
        hops.alive = False

    def _allocate(self) -> int:
        size = GROUP_MAX - GROUP_MIN + 1
        for _ in range(size):
            gid = self._next_id
            self._next_id = GROUP_MIN + (gid - GROUP_MIN + 1) % size
            if gid not in self._owner and gid not in self.switch_groups:
                return gid
        raise RuntimeError("taprouter's group id range is exhausted")

    # --- groups ---------------------------------------------------------------------------

    def _group_ops(self, touched: set[int], emptied: set[int], full: bool) -> tuple[list, list]:
        upserts, deletes = [], []
        for gid in sorted(touched | emptied):
            hops = self._owner.get(gid)
            if hops is None:
                continue
            if hops.groups.get(gid, 0) == 0 or hops.spec is None:
                self._drop_group(gid, hops)
                continue
            have = self.switch_groups.get(gid, False)
            if have != hops.spec:
                upserts.append(GroupOp(Op.ADD if have is False else Op.MODIFY, gid, hops.spec))
                self.switch_groups[gid] = hops.spec
        if full:
            for hops in list(self._hops.values()):
                for gid, count in list(hops.groups.items()):
                    if count == 0 or hops.spec is None:
                        self._drop_group(gid, hops)
                if not hops.groups and not hops.punted:
                    self._forget(hops)
        # Groups the switch holds that no hop set owns: after a full pass any of them; otherwise
        # only those this pass dropped (a pass of a few routes must not walk every group).
        candidates = self.switch_groups if full else (touched | emptied) & self.switch_groups.keys()
        for gid in sorted(candidates):
            if gid not in self._owner:
                deletes.append(GroupOp(Op.DELETE, gid, self.switch_groups[gid]))
        for op in deletes:
            del self.switch_groups[op.group_id]
        return upserts, deletes

    def _drop_group(self, gid: int, hops: _Hops) -> None:
        hops.groups.pop(gid, None)
        self._owner.pop(gid, None)
        if hops.open == gid:
            hops.open = 0
        if not hops.groups and not hops.punted:
            self._forget(hops)

    def _unresolved(self, state: KernelState) -> None:
        result: set[NeighbourKey] = set()
        for hopset, hops in self._hops.items():
            if hops.groups or hops.punted:
                result |= fib.unresolved(hopset, state, self._ports)
        self.unresolved = frozenset(result)

    # --- reading ---------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        # From the per-group counts: a pass must not walk a million prefixes for a status line.
        switched = sum(sum(hops.groups.values()) for hops in self._hops.values())
        return {"fib_entries": len(self.flows), "switched": switched, "to_kernel": len(self.flows) - switched,
                "hop_sets": len(self._hops), "groups": len(self._owner),
                "unresolved_next_hops": len(self.unresolved)}
