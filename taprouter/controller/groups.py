"""Binds planned groups (by meaning) to group ids (on the switch), reusing ids across restarts."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Iterable

from .desired import route_flow
from .fib import GroupKey, GroupSpec, Punt
from .flows import Flow, ToGroup
from .pipeline import GROUP_MAX, GROUP_MIN


@dataclass(frozen=True)
class Group:
    group_id: int
    spec: GroupSpec


def _order(item) -> str:
    # Keys mix IPv4 and IPv6 next hops, which do not compare; any stable order will do.
    return repr(item[0])


class GroupIds:
    """Remembers which id each group key has, so a changed next hop modifies its group in place.

    After a restart the daemon has no memory, so `adopt` reuses ids of installed
    groups whose content equals a planned group's: an unchanged kernel then
    costs zero group or flow modifications.
    """

    def __init__(self) -> None:
        self._ids: dict[GroupKey, int] = {}
        self._next = GROUP_MIN

    def adopt(self, planned: dict[GroupKey, GroupSpec], installed: dict[int, GroupSpec],
              routes: dict | None = None, flows: Iterable[Flow] = ()) -> None:
        taken = set(self._ids.values())
        # Groups of equal content (the shards of one next hop) are told apart by the installed
        # route flows that use them: each planned key takes the id most of its routes point to.
        by_key = {f.key: f for f in flows}
        votes: dict[GroupKey, Counter] = {}
        for dst, target in (routes or {}).items():
            if isinstance(target, GroupKey) and target not in self._ids:
                flow = by_key.get(route_flow(dst, Punt.KERNEL, {}).key)
                if flow is not None and len(flow.actions) == 1 and isinstance(flow.actions[0], ToGroup):
                    votes.setdefault(target, Counter())[flow.actions[0].group_id] += 1
        for key, counter in sorted(votes.items(), key=_order):
            for group_id, _ in counter.most_common():
                if group_id not in taken and installed.get(group_id) == planned[key]:
                    self._ids[key] = group_id
                    taken.add(group_id)
                    break
        by_content: dict[GroupSpec, list[int]] = {}
        for group_id, spec in sorted(installed.items()):
            if group_id not in taken:
                by_content.setdefault(spec, []).append(group_id)
        for key, spec in sorted(planned.items(), key=_order):
            if key not in self._ids and by_content.get(spec):
                self._ids[key] = by_content[spec].pop(0)

    def bind(self, planned: dict[GroupKey, GroupSpec]) -> dict[GroupKey, int]:
        """Ids for every planned key; keys that left the plan free their ids."""
        for key in [k for k in self._ids if k not in planned]:
            del self._ids[key]
        used = set(self._ids.values())
        for key in sorted((k for k in planned if k not in self._ids), key=repr):
            self._ids[key] = self._allocate(used)
            used.add(self._ids[key])
        return dict(self._ids)

    def _allocate(self, used: set[int]) -> int:
        size = GROUP_MAX - GROUP_MIN + 1
        for _ in range(size):
            candidate = self._next
            self._next = GROUP_MIN + (self._next - GROUP_MIN + 1) % size
            if candidate not in used:
                return candidate
        raise RuntimeError("taprouter's group id range is exhausted")
