"""Stale holding for a new HA master: what the switch holds and the kernel does not have yet stays.

A daemon that becomes master reads the switch back; its kernel may lack routes the old master's
BIRD learnt (its own BIRD had no sessions). The planner's pass would delete their flows. StaleHold
takes those deletes out of the pass, and the deletes of the groups only they use, and remembers
them; a prefix that comes back is added over its stale flow (an OpenFlow add replaces a flow of the
same table, priority and match), and leaves the hold. `sweep` gives the deletes of what is left, once
the router says its BIRD has converged. Pure: the planner calls it, the tests call it on tables.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Container, Mapping

from ..openflow.groups import GroupSpec
from ..openflow.ops import GroupOp, Op, RouteOp


@dataclass
class StaleHold:
    routes: dict[int, int]  # prefix -> its flow's target on the switch (a group id, or KERNEL)
    groups: dict[int, GroupSpec | None]  # groups only held flows use, as the switch holds them

    def __len__(self) -> int:
        return len(self.routes)


def hold(switch_routes: Mapping[int, int], switch_groups: Mapping[int, GroupSpec | None],
         planned: Container[int], owned: Container[int]) -> StaleHold:
    """The route flows the switch holds whose prefix the planner did not place (`planned`: its
    targets after the pass), and the switch's groups among their targets that no hop set owns."""
    routes = {pk: target for pk, target in switch_routes.items() if pk not in planned}
    groups = {gid: switch_groups.get(gid) for gid in set(routes.values())
              if gid > 0 and gid in switch_groups and gid not in owned}
    return StaleHold(routes, groups)


def keep(routes: list[RouteOp], group_deletes: list[GroupOp], held: StaleHold
         ) -> tuple[list[RouteOp], list[GroupOp]]:
    """A pass's route and group operations without the deletes of what is held. A held prefix the
    pass adds or changes is the kernel's again: it leaves the hold."""
    kept_routes = []
    for op in routes:
        if op[1] in held.routes:
            if op[0] is Op.DELETE:
                continue
            del held.routes[op[1]]
        kept_routes.append(op)
    kept_groups = [op for op in group_deletes if op.group_id not in held.groups]
    return kept_routes, kept_groups


def sweep(held: StaleHold, planned: Container[int], owned: Container[int]) -> tuple[list[RouteOp], list[GroupOp]]:
    """The deletes of what is still held (routes, then groups), in prefix and id order; empties it."""
    routes = [(Op.DELETE, pk, target) for pk, target in sorted(held.routes.items()) if pk not in planned]
    groups = [GroupOp(Op.DELETE, gid, spec) for gid, spec in sorted(held.groups.items()) if gid not in owned]
    held.routes.clear()
    held.groups.clear()
    return routes, groups


def without(plan, routes: list[RouteOp], group_deletes: list[GroupOp]):
    """`plan` (a Pass) with these route and group operations, its counts made again."""
    counts = (sum(1 for op in routes if op[0] is Op.ADD), sum(1 for op in routes if op[0] is Op.MODIFY),
              sum(1 for op in routes if op[0] is Op.DELETE))
    return replace(plan, routes=routes, group_deletes=group_deletes, route_counts=counts,
                   deleted_with_groups=plan.deleted_with_groups if group_deletes else 0)
