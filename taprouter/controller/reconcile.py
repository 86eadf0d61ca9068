"""Compares desired flows with the flows read back from a switch; returns ordered operations."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Iterable

from .flows import Flow
from .pipeline import is_ours


class Op(Enum):
    ADD = "add"
    MODIFY = "modify"  # same (table, priority, match), different actions: keeps counters
    DELETE = "delete"


@dataclass(frozen=True)
class FlowOp:
    op: Op
    flow: Flow


def diff(desired: Iterable[Flow], installed: Iterable[Flow]) -> list[FlowOp]:
    """Operations that turn the installed flows we own into the desired ones.

    Flows whose cookie is not ours are never touched: another controller or an
    operator may own them. Deletes come last, so that a flow being replaced by
    a more specific one never leaves a gap in forwarding.
    """
    want = {f.key: f for f in desired}
    have = {f.key: f for f in installed if is_ours(f.cookie)}
    adds: list[FlowOp] = []
    mods: list[FlowOp] = []
    dels: list[FlowOp] = []
    for key, flow in want.items():
        current = have.get(key)
        if current is None:
            adds.append(FlowOp(Op.ADD, flow))
        elif current != flow:
            # MODIFY keeps the installed cookie; only ADD can change the owner.
            if current.cookie == flow.cookie:
                mods.append(FlowOp(Op.MODIFY, flow))
            else:
                adds.append(FlowOp(Op.ADD, flow))
    for key, flow in have.items():
        if key not in want:
            dels.append(FlowOp(Op.DELETE, flow))
    # Table then priority is order enough; comparing matches too costs more than the diff.
    order = lambda op: (op.flow.table, -op.flow.priority)  # noqa: E731
    return sorted(adds, key=order) + sorted(mods, key=order) + sorted(dels, key=order)


@dataclass(frozen=True)
class GroupOp:
    op: Op
    group_id: int
    spec: object  # fib.GroupSpec; kept loose so this module needs no planner import


def diff_groups(desired: dict, installed: dict) -> tuple[list[GroupOp], list[GroupOp]]:
    """(adds and modifies, deletes) for groups we own, keyed by group id.

    The first list must reach the switch before the flows that use the groups,
    the second only after the flows that used them are gone.
    """
    upserts = []
    for group_id, spec in sorted(desired.items()):
        current = installed.get(group_id)
        if current is None:
            upserts.append(GroupOp(Op.ADD, group_id, spec))
        elif current != spec:
            upserts.append(GroupOp(Op.MODIFY, group_id, spec))
    deletes = [GroupOp(Op.DELETE, gid, spec) for gid, spec in sorted(installed.items()) if gid not in desired]
    return upserts, deletes
