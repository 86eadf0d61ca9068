"""The FIB's hop sets and the switch groups they own, counted route by route.

Groups are shards: each holds at most fib.ROUTES_PER_GROUP routes of one hop
set. FibState places prefixes; this keeps the books those placements need:
which hop set owns which group and how many routes each group carries, which
groups the switch holds, and which next hops still need resolving. A group
that empties is deleted, and with it, on the switch, every flow still
forwarding to it.
"""

from __future__ import annotations

from typing import Iterable

from ...routing.model import KernelState, NeighbourKey
from ..openflow.groups import GroupSpec
from ..openflow.ops import GroupOp, Op
from ..openflow.pipeline import GROUP_MAX, GROUP_MIN
from . import fib
from .fib import HopSet, PortBinding


class Shards:
    """One hop set's books: its group content and the groups its routes are sharded over.

    Identity matters: prefixes, group owners and the classification cache point at the record
    itself, so the hot path never hashes a hop set (hashing next hops and addresses costs
    microseconds)."""

    __slots__ = ("hopset", "spec", "groups", "open", "punted", "alive")

    def __init__(self, hopset: HopSet, spec: GroupSpec | None) -> None:
        self.hopset = hopset
        self.spec = spec  # None: no usable member
        self.groups: dict[int, int] = {}  # group id -> routes on it
        self.open = 0  # the group that last had room
        self.punted = 0  # prefixes sent to the kernel while no member is usable
        self.alive = True


class GroupBooks:
    """Every hop set's Shards, which group each owns, and the groups the switch holds."""

    def __init__(self) -> None:
        self.by_set: dict[HopSet, Shards] = {}
        self.owner: dict[int, Shards] = {}  # group id -> its hop set
        self.switch_groups: dict[int, GroupSpec | None] = {}  # what the switch holds, by id
        self.ports: dict[int, PortBinding] | None = None
        self.unresolved: frozenset[NeighbourKey] = frozenset()
        self.changed = False  # a hop set came or went since `unresolved` was made
        self._next_id = GROUP_MIN

    def adopt(self, groups) -> None:
        """Start again from the groups a switch holds; every record so far is dead."""
        self.switch_groups = dict(groups)
        self.owner = {}
        for shards in self.by_set.values():
            shards.alive = False
        self.by_set = {}

    def record(self, hopset: HopSet, state: KernelState) -> Shards:
        shards = self.by_set.get(hopset)
        if shards is None:
            shards = self.by_set[hopset] = Shards(hopset, fib.group_spec(hopset, state, self.ports))
            self.changed = True
        return shards

    def refresh(self, state: KernelState, touched: set[int]) -> bool:
        """Recompute every hop set's group; True if one gained or lost its last usable member."""
        flipped = False
        for hopset, shards in self.by_set.items():
            spec = fib.group_spec(hopset, state, self.ports)
            if spec != shards.spec:
                flipped |= (spec is None) != (shards.spec is None)
                shards.spec = spec
                touched.update(shards.groups)
        return flipped

    def zero_counts(self) -> None:
        """Before a full pass: every prefix is placed again, counting from zero."""
        for shards in self.by_set.values():
            # A group keeps its owner through the pass; it goes at the end if nothing uses it.
            shards.groups = dict.fromkeys(shards.groups, 0)
            shards.punted = 0
            shards.open = 0

    def room(self, shards: Shards, touched: set[int]) -> int:
        """A group of `shards` with room for one more route, counted; a new one if none has."""
        for gid, count in shards.groups.items():
            if count < fib.ROUTES_PER_GROUP:
                shards.groups[gid] = count + 1
                shards.open = gid
                return gid
        gid = self._allocate()
        self.owner[gid] = shards
        shards.groups[gid] = 1
        shards.open = gid
        touched.add(gid)
        return gid

    def release(self, held: Iterable, emptied: set[int]) -> None:
        """Routes leave what they held: a group (counted down; one at zero goes in `emptied`), the
        kernel or UNKNOWN (nothing to count), or a punted hop set's Shards."""
        owner = self.owner
        for old in held:
            if type(old) is int:
                if old > 0:
                    shards = owner.get(old)
                    if shards is not None:
                        count = shards.groups[old] - 1
                        shards.groups[old] = count
                        if not count:
                            emptied.add(old)
            else:
                old.punted -= 1
                if not old.punted and not old.groups:
                    self.forget(old)

    def release_one(self, old, emptied: set[int]) -> None:
        self.release((old,), emptied)

    def forget(self, shards: Shards) -> None:
        if self.by_set.get(shards.hopset) is shards:
            del self.by_set[shards.hopset]
            self.changed = True  # its next hops may no longer need resolving
        shards.alive = False

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
            shards = self.owner.get(gid)
            if shards is None:
                continue
            if shards.groups.get(gid, 0) == 0 or shards.spec is None:
                self._drop_group(gid, shards)
                continue
            have = self.switch_groups.get(gid, False)
            if have != shards.spec:
                upserts.append(GroupOp(Op.ADD if have is False else Op.MODIFY, gid, shards.spec))
                self.switch_groups[gid] = shards.spec
        if full:
            for shards in list(self.by_set.values()):
                for gid, count in list(shards.groups.items()):
                    if count == 0 or shards.spec is None:
                        self._drop_group(gid, shards)
                if not shards.groups and not shards.punted:
                    self.forget(shards)
        # Groups the switch holds that no hop set owns: after a full pass any of them; otherwise
        # only those this pass dropped (a pass of a few routes must not walk every group).
        candidates = self.switch_groups if full else (touched | emptied) & self.switch_groups.keys()
        for gid in sorted(candidates):
            if gid not in self.owner:
                deletes.append(GroupOp(Op.DELETE, gid, self.switch_groups[gid]))
        for op in deletes:
            del self.switch_groups[op.group_id]
        return upserts, deletes

    def _drop_group(self, gid: int, shards: Shards) -> None:
        shards.groups.pop(gid, None)
        self.owner.pop(gid, None)
        if shards.open == gid:
            shards.open = 0
        if not shards.groups and not shards.punted:
            self.forget(shards)

    def find_unresolved(self, state: KernelState) -> None:
        result: set[NeighbourKey] = set()
        for hopset, shards in self.by_set.items():
            if shards.groups or shards.punted:
                result |= fib.unresolved(hopset, state, self.ports)
        self.unresolved = frozenset(result)
        self.changed = False

    def switched(self) -> int:
        """Routes on a group, from the per-group counts (not a walk of a million prefixes)."""
        return sum(sum(shards.groups.values()) for shards in self.by_set.values())
