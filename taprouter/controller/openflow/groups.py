"""Typed OpenFlow 1.3 groups: indirect for one next hop, select for ECMP."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from functools import total_ordering

from .flows import Action


class GroupType(Enum):
    INDIRECT = "indirect"
    SELECT = "select"


def _action_key(action: Action) -> tuple:
    # An action's fields, in order, are its __dict__'s values (actions cache nothing there).
    return (type(action).__name__, tuple(vars(action).values()))


@total_ordering
@dataclass(frozen=True)
class Bucket:
    """Ordered by weight, then action by action (by kind, then value): an ECMP group's buckets for
    a VLAN and for an untagged port differ in their actions' kinds, and still sort."""

    weight: int
    actions: tuple[Action, ...]

    def __lt__(self, other: "Bucket") -> bool:
        return (self.weight, tuple(map(_action_key, self.actions))) < \
            (other.weight, tuple(map(_action_key, other.actions)))


@dataclass(frozen=True, order=True)
class GroupSpec:
    type: GroupType
    buckets: tuple[Bucket, ...]
