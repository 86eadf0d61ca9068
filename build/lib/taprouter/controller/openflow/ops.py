"""What the planner asks of a switch: adds, modifies and deletes of flows, groups and meters.

Route flows travel as plain (Op, prefix, target) tuples instead: a full table is a million of
them, and an object each would cost more than encoding it (wire.encode_routes).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from .flows import Flow
from .groups import GroupSpec
from .meters import MeterSpec


class Op(Enum):
    ADD = "add"
    MODIFY = "modify"  # same (table, priority, match), different actions: keeps counters
    DELETE = "delete"


@dataclass(frozen=True)
class FlowOp:
    op: Op
    flow: Flow


@dataclass(frozen=True)
class GroupOp:
    op: Op
    group_id: int
    spec: GroupSpec | None  # None: a group read back in a form we do not write, being deleted


@dataclass(frozen=True)
class MeterOp:
    op: Op
    meter_id: int
    spec: MeterSpec


# One route flow's change: (op, packed prefix, group id or pipeline.KERNEL).
RouteOp = tuple[Op, int, int]
