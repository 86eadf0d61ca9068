"""Compares the base flows a switch should hold with those it holds; returns ordered operations."""

from __future__ import annotations

from typing import Iterable

from ..openflow.flows import Flow
from ..openflow.ops import FlowOp, Op
from ..openflow.pipeline import is_ours


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
