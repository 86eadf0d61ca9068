"""The policy table: each enabled policy as the flows that carry it, and the groups and meters its
actions need.

Every frame addressed to the router's ports passes the policy table (pipeline.Table.POLICY) on its
way to the punt table. pipeline.py has its bands and baseflows.py its fixed flows: the ICMPv6 that
keeps the router reachable, the router's own traffic between the policies that also filter it
(to_router) and those that see routed traffic only, and the miss. This plans the policies' own.

A match becomes one flow per IP version, ingress port and port-range block (policy/ranges.py), so
a policy on ports 1024-65535 from two switch ports in both families is 2 x 2 x 6 = 24 flows. Every
flow of a policy carries its id in the cookie's low 32 bits: read-back, counters and expiry find it
by that. A policy's flows change only when it, its ports, or (for FORWARD) its next hop change.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

from ...policy import ranges
from ...policy.model import ICMP, Action, Policy, RateUnit, State
from ...routing.model import KernelState, NeighbourKey
from ..openflow import pipeline
from ..openflow.flows import ETH_TYPE_IPV4, ETH_TYPE_IPV6, FieldMatch, Flow, Match, ToGroup, exact, prefix_match, \
    to_controller
from ..openflow.groups import GroupSpec
from ..openflow.meters import MeterSpec
from ..openflow.ops import FlowOp, GroupOp, MeterOp, Op
from ..openflow.pipeline import OFPFF_SEND_FLOW_REM, Table
from . import fib
from .diff import diff
from .fib import PortBinding

_PORT_FIELDS = {6: ("tcp_src", "tcp_dst"), 17: ("udp_src", "udp_dst"), 132: ("sctp_src", "sctp_dst")}


@dataclass(frozen=True)
class Planned:
    """What one policy became: its flows, the group or meter it needs, and where it stands."""

    flows: frozenset[Flow]
    state: State
    error: str = ""
    group: tuple[int, GroupSpec] | None = None
    meter: tuple[int, MeterSpec] | None = None
    unresolved: NeighbourKey | None = None  # its next hop, for the kernel to resolve


class IdBook:
    """Group or meter ids of the policies that need one, kept while the policy does, so one policy's
    flows do not change when another comes or goes. Rebuilt from a read-back."""

    def __init__(self, low: int, high: int) -> None:
        self.low, self.high = low, high
        self.by_policy: dict[int, int] = {}

    def adopt(self, pairs: Iterable[tuple[int, int]]) -> None:
        self.by_policy = {policy: value for policy, value in pairs if self.low <= value <= self.high}

    def of(self, policy: int) -> int:
        found = self.by_policy.get(policy)
        if found is None:
            used = set(self.by_policy.values())
            found = next((v for v in range(self.low, self.high + 1) if v not in used), None)
            if found is None:
                raise ValueError(f"no free id in {self.low:#x}..{self.high:#x}")
            self.by_policy[policy] = found
        return found

    def keep(self, policies: Iterable[int]) -> None:
        """Forget the ids of policies that no longer need one: all but these."""
        alive = set(policies)
        self.by_policy = {p: v for p, v in self.by_policy.items() if p in alive}

    def forget(self, policies: Iterable[int]) -> None:
        """Forget the ids of these policies, which no longer need one."""
        for policy in policies:
            self.by_policy.pop(policy, None)


def plan(policy: Policy, bindings: Mapping[int, PortBinding], state: KernelState, groups: IdBook,
         meters: IdBook) -> Planned:
    """One enabled policy, with its store id, as flows, with the group or meter it needs."""
    cookie = pipeline.policy_cookie(policy.id)
    base = pipeline.PRIO_POLICY_TO_ROUTER if policy.to_router else pipeline.PRIO_POLICY_ROUTED
    timed = bool(policy.idle_timeout or policy.hard_timeout)
    extra = dict(cookie=cookie, idle_timeout=policy.idle_timeout or 0, hard_timeout=policy.hard_timeout or 0,
                 flags=OFPFF_SEND_FLOW_REM if timed else 0)
    group = meter = unresolved = None
    state_now, error = State.INSTALLED, ""
    actions: tuple = ()
    goto = meter_id = None
    if policy.action is Action.PERMIT:
        goto = int(Table.PUNT)
    elif policy.action is Action.POLICE:
        rate = policy.rate
        spec = MeterSpec.pps(rate.value) if rate.unit is RateUnit.PPS else MeterSpec.kbps_rate(rate.value)
        meter = (meters.of(policy.id), spec)
        goto, meter_id = int(Table.PUNT), meter[0]
    elif policy.action is Action.FORWARD:
        hop = next_hop(policy, bindings, state)
        if hop is None:
            return Planned(frozenset(), State.FAILED, f"next hop {policy.via} is on no subnet of a switch port")
        spec = fib.group_spec(((hop, 1),), state, bindings)
        if spec is None:
            # The kernel forwards its traffic meanwhile, and resolves the neighbour; the group follows.
            actions, meter_id = (to_controller(),), pipeline.SLOW_PATH_METER
            state_now, error, unresolved = State.PENDING, f"next hop {policy.via} is not resolved yet", hop
        else:
            group = (groups.of(policy.id), spec)
            actions = (ToGroup(group[0]),)
    flows = frozenset(pipeline.check(Flow(int(Table.POLICY), base + policy.priority, match, actions=actions,
                                          goto=goto, meter=meter_id, **extra))
                      for match in matches(policy))
    return Planned(flows, state_now, error, group, meter, unresolved)


def next_hop(policy: Policy, bindings: Mapping[int, PortBinding], state: KernelState) -> NeighbourKey | None:
    """The neighbour a FORWARD goes to: its address on the switch port whose subnet holds it."""
    for address in sorted(state.addresses, key=lambda a: (a.ifindex, a.interface.version, int(a.interface.ip))):
        iface = address.interface
        if address.ifindex in bindings and policy.via in iface.network and iface.network.prefixlen < iface.max_prefixlen:
            return NeighbourKey(address.ifindex, policy.via)
    return None


def matches(policy: Policy) -> list[Match]:
    """Every OpenFlow match of a policy: its IP versions x ingress ports x port-range blocks."""
    m = policy.match
    out = []
    for version in policy.versions():
        fields = [exact("eth_type", ETH_TYPE_IPV4 if version == 4 else ETH_TYPE_IPV6)]
        if m.src is not None:
            fields.append(prefix_match("ipv4_src" if version == 4 else "ipv6_src", m.src))
        if m.dst is not None:
            fields.append(prefix_match("ipv4_dst" if version == 4 else "ipv6_dst", m.dst))
        if m.proto is not None:
            fields.append(exact("ip_proto", m.proto))
        if m.icmp_type is not None:
            fields.append(exact("icmpv4_type" if m.proto == ICMP else "icmpv6_type", m.icmp_type))
        choices: list[list[FieldMatch | None]] = [[exact("in_port", p) for p in m.in_ports] or [None]]
        if m.proto in _PORT_FIELDS:
            for name, span in zip(_PORT_FIELDS[m.proto], (m.sport, m.dport)):
                if span is not None:
                    choices.append([FieldMatch(name, value, mask) for value, mask in ranges.masked(span.low, span.high)])
        for chosen in itertools.product(*choices):
            out.append(Match.of(*fields, *(f for f in chosen if f is not None)))
    return out


@dataclass
class PolicyTable:
    """The planner's books of the policy table: per policy id, the flows the switch holds, and the
    groups and meters of the policy ranges. Planned incrementally: a pass replans the policies that
    changed, and FORWARDs when neighbours or links did; ports changing replans all. A pass that
    replans few policies costs work for those few, not for every policy the router has: policies
    handed over again unchanged are the same objects, so they are told apart by identity first."""

    installed: dict[int, frozenset[Flow]] = field(default_factory=dict)  # policy id -> its flows on the switch
    groups: dict[int, GroupSpec | None] = field(default_factory=dict)  # in the policy group range
    meters: dict[int, MeterSpec | None] = field(default_factory=dict)  # in the policy meter range
    group_ids: IdBook = field(default_factory=lambda: IdBook(pipeline.POLICY_GROUP_MIN, pipeline.POLICY_GROUP_MAX))
    meter_ids: IdBook = field(default_factory=lambda: IdBook(pipeline.POLICY_METER_MIN, pipeline.POLICY_METER_MAX))
    policies: dict[int, Policy] = field(default_factory=dict)  # as last planned
    planned: dict[int, Planned] = field(default_factory=dict)
    flow_count: int = 0  # sum of len(installed[...])
    _states: dict[int, tuple[State, str]] = field(default_factory=dict)  # planned's, kept alongside
    _unresolved: dict[int, NeighbourKey] = field(default_factory=dict)  # likewise
    _last: Sequence[Policy] | None = None  # the sequence last synced, for a pass given the same again

    def adopt(self, flows: Iterable[Flow], groups: Mapping[int, GroupSpec | None],
              meters: Mapping[int, MeterSpec | None]) -> None:
        """Start from what a switch holds: its policy flows (by the id in their cookie), groups, meters."""
        by_id: dict[int, set[Flow]] = {}
        for flow in flows:
            by_id.setdefault(flow.cookie & 0xFFFFFFFF, set()).add(flow)
        self.installed = {pid: frozenset(f) for pid, f in by_id.items()}
        self.flow_count = sum(map(len, self.installed.values()))
        self.groups = {gid: spec for gid, spec in groups.items()
                       if pipeline.POLICY_GROUP_MIN <= gid <= pipeline.POLICY_GROUP_MAX}
        self.meters = {mid: spec for mid, spec in meters.items()
                       if pipeline.POLICY_METER_MIN <= mid <= pipeline.POLICY_METER_MAX}
        self.group_ids.adopt((pid, a.group_id) for pid, fs in self.installed.items() for f in fs
                             for a in f.actions if isinstance(a, ToGroup))
        self.meter_ids.adopt((pid, f.meter) for pid, fs in self.installed.items() for f in fs if f.meter is not None)
        self.policies, self.planned, self._states, self._unresolved, self._last = {}, {}, {}, {}, None

    def sync(self, policies: Sequence[Policy], bindings: Mapping[int, PortBinding], state: KernelState,
             everything: bool, neighbours: bool) -> "PolicyChanges":
        """Bring the policy table to `policies` (enabled, not expired, each with its id): what to send.
        everything: ports changed, or a read-back; neighbours: links, neighbours or addresses changed."""
        if policies is self._last and not everything and not neighbours:
            return PolicyChanges([], [], [], [], [])  # the very sequence planned last time
        self._last = policies
        wanted = {p.id: p for p in policies}
        had = self.policies
        if everything:
            dirty = set(wanted)
        else:
            dirty = {pid for pid, p in wanted.items()
                     if (old := had.get(pid)) is not p and old != p or (neighbours and p.action is Action.FORWARD)}
        dirty |= had.keys() - wanted.keys()
        dirty |= self.installed.keys() - wanted.keys()
        self.policies = wanted
        if not dirty and not everything:
            return PolicyChanges([], [], [], [], [])
        before = {pid: self.planned[pid] for pid in dirty if pid in self.planned}
        want_flows: set[Flow] = set()
        have_flows: set[Flow] = set()
        for pid in dirty:
            policy = wanted.get(pid)
            planned = None if policy is None else plan(policy, bindings, state, self.group_ids, self.meter_ids)
            old_flows = self.installed.get(pid, frozenset())
            have_flows |= old_flows
            self.flow_count -= len(old_flows)
            if planned is None:
                self.installed.pop(pid, None)
                self.planned.pop(pid, None)
                self._states.pop(pid, None)
                self._unresolved.pop(pid, None)
                continue
            want_flows |= planned.flows
            self.flow_count += len(planned.flows)
            self.installed[pid] = planned.flows
            self.planned[pid] = planned
            self._states[pid] = (planned.state, planned.error)
            if planned.unresolved is None:
                self._unresolved.pop(pid, None)
            else:
                self._unresolved[pid] = planned.unresolved
        flow_ops = diff(want_flows, have_flows)
        if everything:  # after a read-back the switch's groups and meters may belong to no policy
            self.group_ids.keep(pid for pid, p in self.planned.items() if p.group is not None)
            self.meter_ids.keep(pid for pid, p in self.planned.items() if p.meter is not None)
            groups = _books(self.groups, {p.group[0]: p.group[1] for p in self.planned.values() if p.group is not None},
                            GroupOp)
            meters = _books(self.meters, {p.meter[0]: p.meter[1] for p in self.planned.values() if p.meter is not None},
                            MeterOp)
        else:  # only the replanned policies' can have changed
            self.group_ids.forget(pid for pid in dirty if (p := self.planned.get(pid)) is None or p.group is None)
            self.meter_ids.forget(pid for pid in dirty if (p := self.planned.get(pid)) is None or p.meter is None)
            groups = _changed(self.groups, *_items(dirty, before, self.planned, "group"), GroupOp)
            meters = _changed(self.meters, *_items(dirty, before, self.planned, "meter"), MeterOp)
        return PolicyChanges(flow_ops, *groups, *meters, True)

    def states(self) -> dict[int, tuple[State, str]]:
        return dict(self._states)

    def unresolved(self) -> frozenset[NeighbourKey]:
        return frozenset(self._unresolved.values())


@dataclass(frozen=True)
class PolicyChanges:
    flows: list[FlowOp]
    group_upserts: list[GroupOp]
    group_deletes: list[GroupOp]
    meter_upserts: list[MeterOp]
    meter_deletes: list[MeterOp]
    replanned: bool = False  # some policy was planned again: its state may have changed

    def __bool__(self) -> bool:
        return bool(self.flows or self.group_upserts or self.group_deletes or self.meter_upserts
                    or self.meter_deletes)


def _books(have: dict, want: dict, op_type) -> tuple[list, list]:
    """Upserts and deletes that bring `have` (updated in place) to `want`, by id."""
    upserts = [op_type(Op.MODIFY if gid in have else Op.ADD, gid, spec) for gid, spec in sorted(want.items())
               if have.get(gid, False) != spec]
    deletes = [op_type(Op.DELETE, gid, have[gid]) for gid in sorted(have.keys() - want.keys())]
    have.clear()
    have.update(want)
    return upserts, deletes


def _items(dirty: Iterable[int], before: Mapping[int, Planned], after: Mapping[int, Planned],
           kind: str) -> tuple[dict, set]:
    """The group or meter ids the replanned policies need now, with their specs; and the ids they
    held before and hold no more. An id belongs to one policy (IdBook), so no other needs those."""
    want: dict = {}
    held: set = set()
    for pid in dirty:
        if (item := getattr(after.get(pid), kind, None)) is not None:
            want[item[0]] = item[1]
        if (item := getattr(before.get(pid), kind, None)) is not None:
            held.add(item[0])
    return want, held - want.keys()


def _changed(have: dict, want: dict, gone: set, op_type) -> tuple[list, list]:
    """Upserts and deletes for some ids only (updating `have` in place): `want` set, `gone` dropped."""
    upserts = [op_type(Op.MODIFY if gid in have else Op.ADD, gid, spec) for gid, spec in sorted(want.items())
               if have.get(gid, False) != spec]
    deletes = [op_type(Op.DELETE, gid, have[gid]) for gid in sorted(gone) if gid in have]
    have.update(want)
    for gid in gone:
        have.pop(gid, None)
    return upserts, deletes
