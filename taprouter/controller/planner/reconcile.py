"""One reconcile pass: the kernel's changes and what the switch holds in, the operations to send out.

Planner.plan is the pass. The daemon's reconcile thread calls it for each router whose switch is
in sync, and the unit tests call the same function against an in-memory OpenFlow table. It keeps
its own incremental state (the FIB per prefix, the base flows and meters as written, the backlog
of changes not yet planned), so a change costs work for its prefix only. It does no I/O: what to
send comes back as a Pass, in the order it must reach the switch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from operator import itemgetter
from typing import Callable, Mapping, Sequence

from ...policy.model import Policy, State
from ...routing.model import KernelState, MirrorChanges, NeighbourKey
from ..openflow.flows import Flow
from ..openflow.groups import GroupSpec
from ..openflow.meters import MeterSpec
from ..openflow.ops import FlowOp, GroupOp, MeterOp, Op, RouteOp
from ..openflow.pipeline import GROUP_MAX, GROUP_MIN, Owner, Table, is_punt_meter, meters_for, owner_of
from . import baseflows, punt, stale
from .backlog import PASS_ROUTES, Backlog
from .diff import diff
from .fib import PortBinding
from .fibstate import FibState
from .policies import PolicyChanges, PolicyTable

FIB_TABLES = (Table.FIB4, Table.FIB6)
_PREFIX = itemgetter(1)  # of a RouteOp


@dataclass(frozen=True)
class KernelView:
    """What a pass reads of the kernel mirror: what changed, the routes, the rest as a snapshot."""

    changes: MirrorChanges  # KernelMirror.take_changes()
    routes: Mapping[int, tuple]  # prefix -> entry, read without the mirror's lock (single reads)
    items: Callable[[], list]  # every (prefix, entry), taken under the lock: what a full pass walks
    state: KernelState  # links, neighbours and addresses


@dataclass(frozen=True)
class PortInput:
    """A configured port as the switch describes it, with a TAP that stands for it: one per TAP, so a
    port with VLANs comes once per VLAN (and once more for its untagged TAP, if it has one)."""

    number: int
    tap: str
    mac: int
    up: bool
    vid: int | None = None  # fib.PortBinding.vid: None on a router without VLANs, 0 untagged


@dataclass(frozen=True)
class ReadBack:
    """What a switch was found holding of ours when it connected (or was read again after an error)."""

    routes: dict[int, int]  # route flows: prefix -> group id or pipeline.KERNEL
    flows: frozenset[Flow]  # our other flows, policies' included
    groups: dict[int, GroupSpec | None]  # our groups, both ranges; None: in a form we do not write
    meters: dict[int, MeterSpec | None]  # our meters, both ranges; likewise


@dataclass(frozen=True)
class SwitchView:
    """What a pass knows of the switch: its configured ports, and a read-back when there is a new one."""

    ports: Sequence[PortInput]
    read_back: ReadBack | None = None
    bgp_peers: frozenset | None = None  # BGP neighbours' addresses (BIRD's), None if unknown


@dataclass(frozen=True)
class Pass:
    """One pass's operations, each list in the order it must reach the switch, the lists in this order:
    meters before the flows that use them, groups before the flows that point at them, base flows
    (but deletes outside the FIBs) and stale FIB-table flows before the route flows that may take
    their place, route flows (adds, modifies, deletes, each in prefix order), the remaining base
    flow deletes (no punt flow leaves a gap), and the groups nobody uses any more."""

    meters: list[MeterOp] = field(default_factory=list)
    group_upserts: list[GroupOp] = field(default_factory=list)
    early: list[FlowOp] = field(default_factory=list)
    routes: list[RouteOp] = field(default_factory=list)
    late: list[FlowOp] = field(default_factory=list)
    group_deletes: list[GroupOp] = field(default_factory=list)
    meter_deletes: list[MeterOp] = field(default_factory=list)
    route_counts: tuple[int, int, int] = (0, 0, 0)  # adds, modifies, deletes in `routes`
    deleted_with_groups: int = 0  # route flows the group deletes take with them (not in `routes`)
    full: bool = False  # every prefix was looked at (a read-back, a re-dump, new ports)
    adopted: bool = False  # the pass started from a read-back
    unresolved: frozenset[NeighbourKey] = frozenset()  # next hops the kernel should resolve
    # Every policy's state by id when some policy was planned again; None when none was.
    policy_states: dict[int, tuple[State, str]] | None = None

    def __bool__(self) -> bool:
        return bool(self.meters or self.group_upserts or self.early or self.routes or self.late
                    or self.group_deletes or self.meter_deletes)

    def counts(self) -> dict[str, int]:
        """Flow adds, modifies and deletes (route and base) and group changes: the log's figures."""
        flow_ops = self.early + self.late
        adds, modifies, deletes = self.route_counts
        return {"add": adds + sum(1 for o in flow_ops if o.op is Op.ADD),
                "modify": modifies + sum(1 for o in flow_ops if o.op is Op.MODIFY),
                "delete": deletes + self.deleted_with_groups + sum(1 for o in flow_ops if o.op is Op.DELETE),
                "groups": len(self.group_upserts) + len(self.group_deletes),
                "meters": len(self.meters) + len(self.meter_deletes)}


class Planner:
    """One router's planner: owns what its switch holds as written, and what is left to plan."""

    def __init__(self, pass_routes: int = PASS_ROUTES) -> None:
        self.fib = FibState()
        self.backlog = Backlog(pass_routes)
        self._base: frozenset[Flow] = frozenset()  # our base flows on the switch
        self._base_for: tuple | None = None  # the ports and BGP peers _base was planned for
        self._bound: dict[int, PortBinding] | None = None  # the port bindings policies were planned for
        self._meters: dict[int, MeterSpec | None] = {}
        self.policy_table = PolicyTable()
        # HA: the next read-back is a takeover's, whose missing routes are held (stale.py), not deleted.
        self.hold_next = False
        self.stale: stale.StaleHold | None = None

    def plan(self, kernel: KernelView, switch: SwitchView, now: float, policies: Sequence[Policy] | None = ()
             ) -> Pass:
        """Bring the switch to the kernel and to `policies` (the enabled, unexpired ones, each with its
        store id; None while the store has not been read: the policy table stays as the switch holds
        it): returns what to send. Call with a read-back first after every (re)connection;
        then every pass's operations must reach the switch before the next pass is planned, or the
        switch be read back again. `now` (monotonic seconds) is not needed yet: policies' timeouts
        run on the switch."""
        adopted = switch.read_back is not None
        if adopted:
            self._adopt(switch.read_back)
        taken = kernel.changes
        backlog = self.backlog
        backlog.add(taken.routes, taken.gone, taken.withdrawn)
        changed, gone = backlog.take()  # a load's routes a slice at a time
        views, bindings = _bindings(switch.ports, kernel.state)
        changes = self.fib.sync(kernel.routes, kernel.state, bindings, changed, taken.other, taken.full,
                                kernel.items, gone=gone)
        if changes.full:
            backlog.clear()  # it looked at every route
        if (views, switch.bgp_peers) == self._base_for:
            early, late = [], []  # ports, addresses and BGP peers as last time: nothing to redo
        else:
            want = baseflows.build(views, switch.bgp_peers)
            early, late = _split(diff(want, self._base))
            self._base, self._base_for = want, (views, switch.bgp_peers)
        everything = adopted or bindings != self._bound
        self._bound = bindings
        table = self.policy_table
        if policies is None:
            policy = PolicyChanges([], [], [], [], [], False)
        else:
            policy = table.sync(policies, bindings, kernel.state, everything, taken.other)
        policy_early, policy_late = _split(policy.flows)
        adds, modifies, _ = changes.counts
        routes = changes.routes
        meter_upserts, meter_deletes = self._meter_ops(meters_for({view.number for view in views}))
        result = Pass(meters=meter_upserts + policy.meter_upserts,
                      group_upserts=changes.group_upserts + policy.group_upserts, early=early + policy_early,
                      routes=(sorted(routes[:adds], key=_PREFIX) + sorted(routes[adds:adds + modifies], key=_PREFIX)
                              + sorted(routes[adds + modifies:], key=_PREFIX)),
                      late=late + policy_late, group_deletes=changes.group_deletes + policy.group_deletes,
                      meter_deletes=meter_deletes + policy.meter_deletes, route_counts=changes.counts,
                      deleted_with_groups=changes.deleted_with_groups, full=changes.full, adopted=adopted,
                      unresolved=self.fib.unresolved | table.unresolved(),
                      policy_states=table.states() if policy.replanned else None)
        if adopted:
            self.stale = None  # what a read-back holds is decided again
            if self.hold_next:
                self.hold_next = False
                books = self.fib.books
                self.stale = stale.hold(switch.read_back.routes, switch.read_back.groups, self.fib.targets,
                                        books.owner)
        if self.stale:
            kept_routes, kept_groups = stale.keep(result.routes, result.group_deletes, self.stale)
            for gid, spec in self.stale.groups.items():
                # Still on the switch: no new group may take its id before the sweep.
                self.fib.books.switch_groups.setdefault(gid, spec)
            result = stale.without(result, kept_routes, kept_groups)
        return result

    def sweep_stale(self) -> Pass:
        """The deletes of the flows and groups held since a takeover that did not come back."""
        if self.stale is None:
            return Pass()
        books = self.fib.books
        routes, groups = stale.sweep(self.stale, self.fib.targets, books.owner)
        for op in groups:
            books.switch_groups.pop(op.group_id, None)
        self.stale = None
        return Pass(routes=routes, group_deletes=groups, route_counts=(0, 0, len(routes)))

    def _adopt(self, read_back: ReadBack) -> None:
        fib_groups = {gid: spec for gid, spec in read_back.groups.items() if GROUP_MIN <= gid <= GROUP_MAX}
        self.fib.adopt(read_back.routes, fib_groups)
        policy_flows = {f for f in read_back.flows if owner_of(f.cookie) == Owner.POLICY}
        self._base, self._base_for = read_back.flows - policy_flows, None
        self._meters = {mid: spec for mid, spec in read_back.meters.items() if is_punt_meter(mid)}
        self.policy_table.adopt(policy_flows, read_back.groups, read_back.meters)
        self.backlog.clear()  # the full pass that follows looks at every route

    def _meter_ops(self, want: dict[int, MeterSpec]) -> tuple[list[MeterOp], list[MeterOp]]:
        """The punt meters as `want` says: (upserts, deletes). Upserts go before the flows (Open
        vSwitch refuses a flow naming a missing meter), deletes after them."""
        ups = []
        for meter_id, spec in sorted(want.items()):
            have = self._meters.get(meter_id, False)
            if have != spec:
                ups.append(MeterOp(Op.ADD if have is False else Op.MODIFY, meter_id, spec))
                self._meters[meter_id] = spec
        deletes = [MeterOp(Op.DELETE, mid, self._meters.pop(mid))
                   for mid in sorted(self._meters.keys() - want.keys())]
        return ups, deletes

    # --- reading ----------------------------------------------------------------------------

    @property
    def base_flows(self) -> frozenset[Flow]:
        """Our flows on the switch besides the route flows, as planned."""
        return self._base

    def flows_planned(self) -> int:
        """Our flows on the switch as planned: base flows, route flows and policy flows."""
        return len(self.base_flows) + len(self.fib.targets) + self.policy_table.flow_count

    def groups_planned(self) -> int:
        return len(self.fib.switch_groups) + len(self.policy_table.groups)

    def owned(self) -> tuple[list[int], list[int]]:
        """The ids of our groups and meters on the switch, as planned or read back: what a router
        removed by a reload deletes (roster.py)."""
        return (sorted({*self.fib.switch_groups, *self.policy_table.groups}),
                sorted({*self._meters, *self.policy_table.meters}))

    def offload(self, kernel_routes: int) -> dict[str, int]:
        """Kernel routes against FIB entries, for status; from per-group counts, not a walk."""
        return {"kernel_routes": kernel_routes, **self.fib.counts()}


def _bindings(ports: Sequence[PortInput], state: KernelState) -> tuple[list[punt.PortView], dict[int, PortBinding]]:
    """The ports the punt plan and the FIB see: each configured port the switch has and whose TAP the
    kernel has, with the router's addresses on it (IPv6 link-local ones aside: punted by scope)."""
    views, bindings = [], {}
    for port in ports:
        link = state.link_by_name(port.tap)
        if link is None:
            continue
        addresses = tuple(sorted((a.interface for a in state.addresses if a.ifindex == link.index
                                  and not (a.interface.version == 6 and a.interface.ip.is_link_local)), key=str))
        views.append(punt.PortView(port.number, port.mac, addresses, port.vid))
        bindings[link.index] = PortBinding(link.index, port.number, port.mac, port.up, port.vid)
    return views, bindings


def _split(flow_ops: list[FlowOp]) -> tuple[list[FlowOp], list[FlowOp]]:
    """(what goes before the route flows, what goes after): deletes outside the FIB tables go last,
    so no punt flow leaves a gap; a stale flow in a FIB table goes first, as the route flow for
    its prefix may take its place (table, priority and match) in the same pass."""
    late = [op for op in flow_ops if op.op is Op.DELETE and op.flow.table not in FIB_TABLES]
    early = [op for op in flow_ops if not (op.op is Op.DELETE and op.flow.table not in FIB_TABLES)]
    return early, late
