"""The FIB as the switch holds it, kept up to date one changed prefix at a time.

A full table is a million routes; replanning it on every change would cost
seconds per change. FibState remembers, per prefix, what the switch holds (a
group id, or the kernel), and per hop set its groups, so a change costs
work in proportion to what changed. A full pass (all prefixes) happens only
on a new switch connection, a kernel re-dump, a change of the switch's ports,
or a hop set gaining or losing its last usable member.

Groups are shards of a hop set (hopsets.py keeps their books). A route keeps
its group while it stays on the same hop set; after a restart, routes keep the
group the switch shows them using, so an unchanged kernel costs no flow or
group modification.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from .. import gctune
from ..routing.model import KernelState, NeighbourKey
from ..routing.prefix import V6_TAG
from . import fib
from .connected import ConnectedSubnets
from .desired import PUNT
from .fib import KERNEL, GroupSpec, HopSet, PortBinding
from .hopsets import HopSets
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


class FibState:
    def __init__(self) -> None:
        self.flows: dict[int, object] = {}  # prefix -> group id | PUNT | UNKNOWN | Hops (punted)
        self.hopsets = HopSets()
        self._classified: dict[int, tuple] = {}  # id(hops) * 2 + v6 -> (hops, Hops or KERNEL)
        self._connected = ConnectedSubnets()
        self._hosts: dict[int, HopSet] = {}
        self._adopting = True
        self._held: dict[int, object] | None = None  # during a full pass: what the switch held
        self._flows_peak = 0  # gctune.compacted

    def adopt(self, flows: Mapping[int, int], groups: Mapping[int, GroupSpec | None]) -> None:
        """Start again from what a switch holds (read back after it connected)."""
        self.flows = dict(flows)
        self.hopsets.adopt(groups)
        self._classified = {}
        self._adopting = True

    # --- one pass -------------------------------------------------------------------------

    def sync(self, routes: Mapping[int, tuple], state: KernelState, ports: dict[int, PortBinding],
             changed: Iterable[tuple[int, tuple]], other: bool, full: bool, all_prefixes=None,
             gone: Sequence[int] = ()) -> Changes:
        """Bring the held FIB up to the kernel; returns what to send, in order.

        routes: the mirror's prefix -> (metric, hops, ...) entries. changed: (prefix, entry) for
        prefixes with a route that changed since the last pass, each entry as of then; gone:
        prefixes without a route that had one since (Backlog.take gives both); other: links,
        neighbours or addresses changed; full: look at every prefix. all_prefixes: a callable
        giving the mirror's (prefix, entry) items (under its lock).
        """
        full = full or self._adopting
        if not ports:
            routes = {}  # no switch port is a TAP yet: nothing to forward, so no FIB at all
        if ports != self.hopsets.ports:
            self.hopsets.ports = dict(ports)
            self._classified = {}
            full = True
        touched: set[int] = set()  # groups whose content may differ from the switch's
        if other or full:
            full |= self.hopsets.refresh(state, touched)
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
            self._hosts = fib.host_entries(state, self.hopsets.ports, self._connected.by_prefix, routes)
            dirty = set(self._held)
            dirty.update(pk for pk in self._hosts if pk not in routes)
        else:
            # Prefixes with a route first, following the connected subnets on the way; the rest
            # (withdrawn routes, host entries) once the host entries are up to date, as they
            # depend on the connected subnets and on the routes around them.
            # Their entries as they came, not from `routes`: the same, or older by a change that
            # the next pass brings; and no lookup in a dict of a million. A withdrawal's million
            # do not go through _place's loop.
            stale = self._gone_past_connected(gone)
            stale |= self._place(changed, state, adds, modifies, deletes, emptied, touched, True)
            # They had no route a moment ago: no need to look each up again (a withdrawal's million).
            dirty, lookup = gone, None
            if stale or other:
                hosts = fib.host_entries(state, self.hopsets.ports, self._connected.by_prefix, routes)
                moved = [pk for pk in hosts.keys() | self._hosts.keys() if hosts.get(pk) != self._hosts.get(pk)]
                self._hosts = hosts
                if moved:  # one with a route was placed above, and placing it again changes nothing
                    dirty, lookup = set(gone), routes
                    dirty.update(moved)
        if lookup is None:
            self._withdraw(dirty, state, adds, modifies, deletes, emptied, touched)
        else:
            self._place([(pk, lookup.get(pk)) for pk in dirty], state, adds, modifies, deletes, emptied, touched)
        upserts, group_deletes = self.hopsets.group_ops(touched, emptied, full)
        with_groups = 0
        if group_deletes and deletes:
            # Deleting a group deletes every flow that forwards to it (OpenFlow 1.3), and Open
            # vSwitch 3.1 does that cheaper than flow by flow: 1M route flows on 977 groups cost it
            # 6.9 and 8.4 µs a flow that way (direct feeds, 2026-11-26), against 10.5-13 µs as
            # single deletes in bundles in prefix order. A withdrawal's last pass, behind the
            # kernel, empties whole groups.
            gone = {op.group_id for op in group_deletes}
            kept = [op for op in deletes if op[2] not in gone]
            with_groups, deletes = len(deletes) - len(kept), kept
        if full or other or self.hopsets.changed:
            self.hopsets.find_unresolved(state)
        self._adopting = False
        self._held = None
        self.flows, self._flows_peak = gctune.compacted(self.flows, self._flows_peak)
        if len(self._classified) > 65536:
            self._classified = {}
        return Changes(upserts, adds + modifies + deletes, group_deletes, full,
                       (len(adds), len(modifies), len(deletes)), with_groups)

    def _rebuild_counts(self) -> None:
        """Before a full pass: every prefix is placed again, counting from zero."""
        self._held = self.flows
        self.flows = {}
        self.hopsets.zero_counts()
        self._connected.clear()

    def _place_every(self, items: list, state: KernelState, adds: list, modifies: list,
                     touched: set[int]) -> None:
        """A full pass over every (prefix, entry) of the kernel, against what the switch held.

        The restart path: a million prefixes, most of them already right on the switch, so the
        loop is _place's cases for a route, inline, with connected subnets noted on the way.
        """
        classified, held, flows, hopsets = self._classified, self._held, self.flows, self.hopsets
        owner, switch_groups, room, record_of = hopsets.owner, hopsets.switch_groups, hopsets.room, hopsets.record
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
                    record = record_of(record.hopset, state)
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
                    new = room(record, touched)
            flows[pk] = new
            before = old if old is None or type(old) is int else PUNT
            after = new if type(new) is int else PUNT
            if before != after:
                if before is None or before == UNKNOWN:
                    add_op((ADD, pk, after))
                else:
                    modify_op((MODIFY, pk, after))
        self._connected.reindex()

    def _classify(self, hops, v6: int, state: KernelState):
        hopset = fib.classify(hops, bool(v6), self.hopsets.ports)
        record = KERNEL if hopset == KERNEL else self.hopsets.record(hopset, state)
        self._classified[id(hops) * 2 + v6] = (hops, record)
        return record

    def _place(self, dirty: Iterable[tuple[int, tuple | None]], state: KernelState, adds: list, modifies: list,
               deletes: list, emptied: set[int], touched: set[int], follow: bool = False) -> bool:
        """Decide what the switch should hold for each (prefix, entry or None); record the flow
        ops that differ.

        With `follow`, every prefix (each with a route) goes past the connected subnets; returns
        whether host entries may have changed.

        The hot loop of a full-table load: a million iterations, so the common cases are inline.
        """
        classified, flows, held, hosts, hopsets = self._classified, self.flows, self._held, self._hosts, self.hopsets
        owner, room, record_of = hopsets.owner, hopsets.room, hopsets.record
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
        for pk, entry in dirty:
            if follow:
                hops = entry[1]
                if (hops and hops[0].gateway is None) or pk in by_prefix or (
                        pk >> 32 > v4_shortest if pk < V6_TAG else (pk >> 128) & 0xFF > v6_shortest):
                    stale |= connected.changed(pk, hops)
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
                record = None if hopset is None else record_of(hopset, state)
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
                    record = record_of(record.hopset, state)
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
                        new = room(record, touched)
                elif type(old) is int and old > 0 and old not in owner and old in hopsets.switch_groups:
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
                        new = room(record, touched)
            if counted:
                if new is old:
                    continue
                if old is not None and old != PUNT and old != UNKNOWN:
                    hopsets.release(old, emptied)
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

    def _gone_past_connected(self, gone: list[int]) -> bool:
        """_place's walk past the connected subnets, for prefixes that lost their route: whether
        host entries may have changed."""
        connected = self._connected
        by_prefix, v4_shortest, v6_shortest = connected.by_prefix, *connected.shortest()
        near = [pk for pk in gone if pk in by_prefix
                or (pk >> 32 > v4_shortest if pk < V6_TAG else (pk >> 128) & 0xFF > v6_shortest)]
        stale = False
        for pk in near:
            stale |= connected.changed(pk, None)
        return stale

    def _withdraw(self, gone: list[int], state: KernelState, adds: list, modifies: list, deletes: list,
                  emptied: set[int], touched: set[int]) -> None:
        """_place for prefixes that have no route: their flows go, unless they are host entries.

        A withdrawal's million come this way: _place's case for them, inline, one lookup each.
        """
        flows, hosts, owner, release = self.flows, self._hosts, self.hopsets.owner, self.hopsets.release
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
                release(old, emptied)
                old = PUNT
            elif old > 0:  # a group's: release's count-down, inline; PUNT and UNKNOWN count nowhere
                hops = owner.get(old)
                if hops is not None:
                    count = hops.groups[old] - 1
                    hops.groups[old] = count
                    if not count:
                        emptied.add(old)
            delete_op((DELETE, pk, old))
        if hosted:
            self._place([(pk, None) for pk in hosted], state, adds, modifies, deletes, emptied, touched)

    # --- reading ---------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        # From the per-group counts: a pass must not walk a million prefixes for a status line.
        hopsets, switched = self.hopsets, self.hopsets.switched()
        return {"fib_entries": len(self.flows), "switched": switched, "to_kernel": len(self.flows) - switched,
                "hop_sets": len(hopsets.by_set), "groups": len(hopsets.owner),
                "unresolved_next_hops": len(hopsets.unresolved)}

    @property
    def switch_groups(self) -> dict[int, GroupSpec | None]:
        """The groups the switch holds, by id, as we wrote them."""
        return self.hopsets.switch_groups

    @property
    def unresolved(self) -> frozenset[NeighbourKey]:
        """Next hops some route or group needs resolved."""
        return self.hopsets.unresolved
