"""The FIB's hop sets and the switch groups they own, counted route by route.

Groups are shards: each holds at most fib.ROUTES_PER_GROUP routes of one hop
set. FibState places prefixes; this keeps the books those placements need:
which hop set owns which group and how many routes each group carries, which
groups the switch holds, and which next hops still need resolving. A group
that empties is deleted, and with it, on the switch, every flow still
forwarding to it.
"""

from __future__ import annotations

from ..routing.model import KernelState, NeighbourKey
from . import fib
from .fib import GroupSpec, HopSet, PortBinding
from .pipeline import GROUP_MAX, GROUP_MIN
from .reconcile import GroupOp, Op


class Hops:
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


class HopSets:
    def __init__(self) -> None:
        self.by_set: dict[HopSet, Hops] = {}
        self.owner: dict[int, Hops] = {}  # group id -> its hop set
        self.switch_groups: dict[int, GroupSpec | None] = {}  # what the switch holds, by id
        self.ports: dict[int, PortBinding] | None = None
        self.unresolved: frozenset[NeighbourKey] = frozenset()
        self.changed = False  # a hop set came or went since `unresolved` was made
        self._next_id = GROUP_MIN

    def adopt(self, groups) -> None:
        """Start again from the groups a switch holds; every record so far is dead."""
        self.switch_groups = dict(groups)
        self.owner = {}
        for hops in self.by_set.values():
            hops.alive = False
        self.by_set = {}

    def record(self, hopset: HopSet, state: KernelState) -> Hops:
        hops = self.by_set.get(hopset)
        if hops is None:
            hops = self.by_set[hopset] = Hops(hopset, fib.group_spec(hopset, state, self.ports))
            self.changed = True
        return hops

    def refresh(self, state: KernelState, touched: set[int]) -> bool:
        """Recompute every hop set's group; True if one gained or lost its last usable member."""
        flipped = False
        for hopset, hops in self.by_set.items():
            spec = fib.group_spec(hopset, state, self.ports)
            if spec != hops.spec:
                flipped |= (spec is None) != (hops.spec is None)
                hops.spec = spec
                touched.update(hops.groups)
        return flipped

    def zero_counts(self) -> None:
        """Before a full pass: every prefix is placed again, counting from zero."""
        for hops in self.by_set.values():
            # A group keeps its owner through the pass; it goes at the end if nothing uses it.
            hops.groups = dict.fromkeys(hops.groups, 0)
            hops.punted = 0
            hops.open = 0

    def room(self, hops: Hops, touched: set[int]) -> int:
        """A group of `hops` with room for one more route, counted; a new one if none has."""
        for gid, count in hops.groups.items():
            if count < fib.ROUTES_PER_GROUP:
                hops.groups[gid] = count + 1
                hops.open = gid
                return gid
        gid = self._allocate()
        self.owner[gid] = hops
        hops.groups[gid] = 1
        hops.open = gid
        touched.add(gid)
        return gid

    def release(self, old, emptied: set[int]) -> None:
        """A route leaves group `old`, or the punted hop set `old`."""
        if type(old) is int:
            hops = self.owner.get(old)
            if hops is None:
                return
            hops.groups[old] -= 1
            if hops.groups[old] == 0:
                emptied.add(old)
        else:
            old.punted -= 1
            if not old.punted and not old.groups:
                self.forget(old)

    def forget(self, hops: Hops) -> None:
        if self.by_set.get(hops.hopset) is hops:
            del self.by_set[hops.hopset]
            self.changed = True  # its next hops may no longer need resolving
        hops.alive = False

    def _allocate(self) -> int:
        size = GROUP_MAX - GROUP_MIN + 1
        for _ in range(size):
            gid = self._next_id
            self._next_id = GROUP_MIN + (gid - GROUP_MIN + 1) % size
            if gid not in self.owner and gid not in self.switch_groups:
                return gid
        raise RuntimeError("taprouter's group id range is exhausted")

    def group_ops(self, touched: set[int], emptied: set[int], full: bool) -> tuple[list, list]:
        """The group adds and modifies, then deletes, that bring the switch to the books."""
        upserts, deletes = [], []
        for gid in sorted(touched | emptied):
            hops = self.owner.get(gid)
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
            for hops in list(self.by_set.values()):
                for gid, count in list(hops.groups.items()):
                    if count == 0 or hops.spec is None:
                        self._drop_group(gid, hops)
                if not hops.groups and not hops.punted:
                    self.forget(hops)
        # Groups the switch holds that no hop set owns: after a full pass any of them; otherwise
        # only those this pass dropped (a pass of a few routes must not walk every group).
        candidates = self.switch_groups if full else (touched | emptied) & self.switch_groups.keys()
        for gid in sorted(candidates):
            if gid not in self.owner:
                deletes.append(GroupOp(Op.DELETE, gid, self.switch_groups[gid]))
        for op in deletes:
            del self.switch_groups[op.group_id]
        return upserts, deletes

    def _drop_group(self, gid: int, hops: Hops) -> None:
        hops.groups.pop(gid, None)
        self.owner.pop(gid, None)
        if hops.open == gid:
            hops.open = 0
        if not hops.groups and not hops.punted:
            self.forget(hops)

    def find_unresolved(self, state: KernelState) -> None:
        result: set[NeighbourKey] = set()
        for hopset, hops in self.by_set.items():
            if hops.groups or hops.punted:
                result |= fib.unresolved(hopset, state, self.ports)
        self.unresolved = frozenset(result)
        self.changed = False

    def switched(self) -> int:
        """Routes on a group, from the per-group counts (not a walk of a million prefixes)."""
        return sum(sum(hops.groups.values()) for hops in self.by_set.values())
