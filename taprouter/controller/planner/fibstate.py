"""The FIB as the switch holds it, kept up to date one changed prefix at a time.

A full table is a million routes; replanning it on every change would cost
seconds per change. FibState remembers, per prefix, what the switch holds (a
group id, or the kernel), and per hop set its groups, so a change costs
work in proportion to what changed. A full pass (all prefixes) happens only
on a new switch connection, a kernel re-dump, a change of the switch's ports,
or a hop set gaining or losing its last usable member.

Groups are shards of a hop set (groupbooks.py keeps their books). A route keeps
its group while it stays on the same hop set; after a restart, routes keep the
group the switch shows them using, so an unchanged kernel costs no flow or
group modification.

Two loops decide what the switch holds: _place for prefixes with an entry (a
kernel route, or a host entry written as one), _withdraw for prefixes with
none. Both are the hot loops of a full table (a load, a restart's full pass, a
withdrawal), so each writes its cases inline rather than calling per prefix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence

from ... import gctune
from ...prefix import V6_TAG
from ...routing.model import KernelState, NeighbourKey
from ..openflow.groups import GroupSpec
from ..openflow.ops import GroupOp, Op, RouteOp
from ..openflow.pipeline import KERNEL
from . import fib
from .connected import ConnectedSubnets
from .fib import PortBinding
from .groupbooks import GroupBooks

# What the switch holds for a prefix: a group id (> 0), KERNEL (the flow to the kernel), or
# UNKNOWN (a flow of ours in a form we do not write, to be overwritten). Prefixes sent to the
# kernel because their hop set has no usable member are held as its Shards record, so they move
# back onto groups when a member becomes usable.
UNKNOWN = -1
_MISSING = object()

# Follows a prefix with an entry past the connected subnets: (prefix, next hops) -> whether host
# entries may have changed.
Follow = Callable[[int, tuple], bool]


@dataclass(frozen=True)
class Changes:
    group_upserts: list[GroupOp]
    routes: list[RouteOp]  # adds, then modifies, then deletes: a million of them, so tuples
    group_deletes: list[GroupOp]
    full: bool
    counts: tuple[int, int, int] = (0, 0, 0)  # route flows added, modified, deleted (the log's figures)
    deleted_with_groups: int = 0  # route flows the group deletes take with them (not in routes)

    def __bool__(self) -> bool:
        return bool(self.group_upserts or self.routes or self.group_deletes)


class _Ops:
    """One pass's route flow operations and group bookkeeping, filled by _place and _withdraw."""

    __slots__ = ("adds", "modifies", "deletes", "touched", "emptied", "released")

    def __init__(self) -> None:
        self.adds: list[RouteOp] = []
        self.modifies: list[RouteOp] = []
        self.deletes: list[RouteOp] = []
        self.touched: set[int] = set()  # groups whose content may differ from the switch's
        self.emptied: set[int] = set()  # groups that lost their last route
        self.released: list = []  # what withdrawn prefixes held, for GroupBooks.release


class FibState:
    def __init__(self) -> None:
        self.targets: dict[int, object] = {}  # prefix -> group id | KERNEL | UNKNOWN | Shards
        self.books = GroupBooks()
        self._classified: dict[int, tuple] = {}  # id(hops) * 2 + v6 -> (hops, Shards or KERNEL)
        self._connected = ConnectedSubnets()
        self._hosts: dict[int, tuple] = {}  # host prefix -> its entry, as fib.host_entries gives it
        self._adopting = True
        self._held: dict[int, object] | None = None  # during a full pass: what the switch held
        self._targets_peak = 0  # gctune.compacted

    def adopt(self, targets: Mapping[int, int], groups: Mapping[int, GroupSpec | None]) -> None:
        """Start again from what a switch holds (read back after it connected)."""
        self.targets = dict(targets)
        self.books.adopt(groups)
        self._classified = {}
        self._adopting = True

    # --- one pass -------------------------------------------------------------------------

    def sync(self, routes: Mapping[int, tuple], state: KernelState, ports: dict[int, PortBinding],
             changed: Iterable[tuple[int, tuple]], other: bool, full: bool,
             all_prefixes: Callable[[], list] | None = None, gone: Sequence[int] = ()) -> Changes:
        """Bring the held FIB up to the kernel; returns what to send, in order.

        routes: the mirror's prefix -> (metric, hops, ...) entries. changed: (prefix, entry) for
        prefixes with a route that changed since the last pass, each entry as of then; gone:
        prefixes without a route that had one since (Backlog.take gives both); other: links,
        neighbours or addresses changed; full: look at every prefix. all_prefixes: a callable
        giving the mirror's (prefix, entry) items (under its lock).
        """
        full = full or self._adopting
        if not ports:
            # No switch port is a TAP yet: nothing to forward, so no FIB at all.
            routes, all_prefixes = {}, None
        if ports != self.books.ports:
            self.books.ports = dict(ports)
            self._classified = {}
            full = True
        ops = _Ops()
        if other or full:
            full |= self.books.refresh(state, ops.touched)
        if full:
            self._full_pass(routes, state, all_prefixes, ops)
        else:
            # Prefixes with a route first, following the connected subnets on the way; the rest
            # (withdrawn routes, host entries) once the host entries are up to date, as they
            # depend on the connected subnets and on the routes around them. The changed
            # prefixes' entries as they came, not from `routes`: the same, or older by a change
            # that the next pass brings; and no lookup in a dict of a million.
            connected = self._connected
            stale = self._gone_past_connected(gone)
            stale |= self._place(changed, state, ops, connected.changed)
            moved: list[int] = []
            if stale or other:
                hosts = fib.host_entries(state, self.books.ports, connected.by_prefix, routes)
                moved = [pk for pk in hosts.keys() | self._hosts.keys() if hosts.get(pk) != self._hosts.get(pk)]
                self._hosts = hosts
            # Each prefix once per pass: a delete and an add of one prefix would go out adds first.
            # A withdrawn prefix that is a host entry now is placed as one.
            self._withdraw(gone, state, ops, counted=True)
            if moved:
                # A prefix with a route was placed above by its route, which wins over a host entry.
                self._withdraw([pk for pk in moved if pk not in routes], state, ops, counted=True)
        self.books.release(ops.released, ops.emptied)
        upserts, group_deletes = self.books.group_ops(ops.touched, ops.emptied, full)
        deletes, with_groups = ops.deletes, 0
        if group_deletes and deletes:
            # Deleting a group deletes every flow that forwards to it (OpenFlow 1.3), and Open
            # vSwitch 3.1 does that cheaper than flow by flow (docs/performance.md). A
            # withdrawal's last pass, behind the kernel, empties whole groups.
            emptied = {op.group_id for op in group_deletes}
            kept = [op for op in deletes if op[2] not in emptied]
            with_groups, deletes = len(deletes) - len(kept), kept
        if full or other or self.books.changed:
            self.books.find_unresolved(state)
        self._adopting = False
        self._held = None
        self.targets, self._targets_peak = gctune.compacted(self.targets, self._targets_peak)
        if len(self._classified) > 65536:
            self._classified = {}
        return Changes(upserts, ops.adds + ops.modifies + deletes, group_deletes, full,
                       (len(ops.adds), len(ops.modifies), len(deletes)), with_groups)

    def _full_pass(self, routes: Mapping[int, tuple], state: KernelState,
                   all_prefixes: Callable[[], list] | None, ops: _Ops) -> None:
        """Every prefix placed again, counting from zero, against what the switch held."""
        self._held, self.targets = self.targets, {}
        self.books.zero_counts()
        connected = self._connected
        connected.clear()
        items = all_prefixes() if all_prefixes is not None else list(routes.items())
        self._place(items, state, ops, connected.note)
        connected.reindex()
        self._hosts = fib.host_entries(state, self.books.ports, connected.by_prefix, routes)
        self._place([(pk, entry) for pk, entry in self._hosts.items() if pk not in routes], state, ops)
        # What is left is held by the switch and no longer in the kernel, but for routes that came
        # after `items` was taken: their change is also in the next pass's, so placing them now
        # saves a delete and an add.
        left = [(pk, routes.get(pk)) for pk in self._held]
        self._place([(pk, entry) for pk, entry in left if entry is not None], state, ops)
        self._withdraw([pk for pk, entry in left if entry is None], state, ops, counted=False)

    def _classify(self, hops, v6: int, state: KernelState):
        hopset = fib.classify(hops, bool(v6), self.books.ports)
        record = KERNEL if hopset == KERNEL else self.books.record(hopset, state)
        self._classified[id(hops) * 2 + v6] = (hops, record)
        return record

    def _place(self, items: Iterable[tuple[int, tuple]], state: KernelState, ops: _Ops,
               follow: Follow | None = None) -> bool:
        """Decide what the switch should hold for each (prefix, entry); record the flow ops that
        differ. A prefix the switch held before this full pass (self._held) is not counted on its
        group yet; one in self.targets is.

        With `follow`, each prefix that may bear on host entries goes past it; returns whether
        host entries may have changed.
        """
        classified, targets, held, books = self._classified, self.targets, self._held, self.books
        owner, room, record_of = books.owner, books.room, books.record
        limit = fib.ROUTES_PER_GROUP
        add_op, modify_op, touched, emptied = ops.adds.append, ops.modifies.append, ops.touched, ops.emptied
        ADD, MODIFY = Op.ADD, Op.MODIFY
        # Which prefixes ConnectedSubnets.changed can say anything for: connected routes, now or
        # before, and prefixes longer than the shortest connected subnet. The lengths may go stale
        # as subnets change in the loop, but a subnet changing makes the pass stale already, and
        # then only connected routes matter.
        connected = self._connected
        by_prefix, v4_shortest, v6_shortest = connected.by_prefix, *connected.shortest()
        # A full pass (held set) makes the connected subnets afresh: only connected routes matter.
        near = follow is not None and held is None
        stale = False
        missing = _MISSING
        for pk, entry in items:
            hops = entry[1]
            if follow is not None:
                if hops and hops[0].gateway is None:
                    stale |= follow(pk, hops)
                elif near and ((pk >> 32 > v4_shortest if pk < V6_TAG else (pk >> 128) & 0xFF > v6_shortest)
                               or pk in by_prefix):
                    stale |= follow(pk, hops)
            if hops is None:
                record = KERNEL
            else:
                v6 = pk >> 136  # prefix.V6_TAG: 1 for IPv6, 0 for IPv4
                cached = classified.get(id(hops) * 2 + v6)
                if cached is not None and cached[0] is hops:
                    record = cached[1]
                else:
                    record = self._classify(hops, v6, state)
            old = missing if held is None else held.pop(pk, missing)
            if old is missing:
                old = targets.get(pk)
                counted = True
            else:
                counted = False

            if record is KERNEL:
                new = KERNEL
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
                elif type(old) is int and old > 0 and old not in owner and old in books.switch_groups:
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
            if counted and old is not None:
                if new is old:
                    continue
                books.release_one(old, emptied)
            targets[pk] = new
            before = old if old is None or type(old) is int else KERNEL
            after = new if type(new) is int else KERNEL
            if before != after:
                if before is None or before == UNKNOWN:
                    add_op((ADD, pk, after))
                else:
                    modify_op((MODIFY, pk, after))
        return stale

    def _gone_past_connected(self, gone: Sequence[int]) -> bool:
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

    def _withdraw(self, prefixes: Iterable[int], state: KernelState, ops: _Ops, counted: bool) -> None:
        """For prefixes without a route: a host entry takes the prefix's place, else its flow goes.
        `counted`: they come from self.targets (their groups count them), not from self._held."""
        hosts = self._hosts
        pop = (self.targets if counted else self._held).pop
        delete_op, DELETE = ops.deletes.append, Op.DELETE
        release = ops.released.append if counted else None
        hosted = []
        for pk in prefixes:
            if pk in hosts:
                hosted.append((pk, hosts[pk]))
                continue
            old = pop(pk, None)
            if old is None:
                continue
            if release is not None:
                release(old)
            delete_op((DELETE, pk, old if type(old) is int else KERNEL))
        if hosted:
            self._place(hosted, state, ops)

    # --- reading ---------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        # From the per-group counts: a pass must not walk a million prefixes for a status line.
        books, switched = self.books, self.books.switched()
        return {"fib_entries": len(self.targets), "switched": switched, "to_kernel": len(self.targets) - switched,
                "hop_sets": len(books.by_set), "groups": len(books.owner),
                "unresolved_next_hops": len(books.unresolved)}

    @property
    def switch_groups(self) -> dict[int, GroupSpec | None]:
        """The groups the switch holds, by id, as we wrote them."""
        return self.books.switch_groups

    @property
    def unresolved(self) -> frozenset[NeighbourKey]:
        """Next hops some route or group needs resolved."""
        return self.books.unresolved
