"""An in-memory OpenFlow 1.3 table model that runs packets through taprouter's typed flows."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

from taprouter.controller.openflow.groups import GroupSpec, GroupType
from taprouter.controller.openflow.flows import (OFPVID_NONE, OFPVID_PRESENT, Action, DecTtl, Flow, Match, OFPP_CONTROLLER,
                                                 Output, PopVlan, PushVlan, SetField, ToGroup)
from taprouter.controller.openflow.ops import FlowOp, GroupOp, Op

Packet = dict[str, int]
Bucket = tuple[Action, ...]
Key = tuple[int, int, Match]
# A group as the tests hand it over: a fib.GroupSpec, or (the short form) a list of buckets, each a
# tuple of actions: one bucket is applied as it is, several are selected from with equal weights.
GroupDef = GroupSpec | Sequence[Bucket]

# The fields a switch typically hashes to pick a select-group bucket: one flow, one bucket.
HASH_FIELDS = ("eth_src", "eth_dst", "eth_type", "ip_proto", "ipv4_src", "ipv4_dst", "ipv6_src",
               "ipv6_dst", "tcp_src", "tcp_dst", "udp_src", "udp_dst")
MAX_GROUP_DEPTH = 8


class ModelError(AssertionError):
    """The flows do something a real switch would reject or leave undefined."""


@dataclass(frozen=True)
class Emitted:
    port: int
    packet: Mapping[str, int]


@dataclass(frozen=True)
class Fate:
    """What happened to one packet: where copies left, and whether the controller got one."""

    outputs: tuple[Emitted, ...] = ()
    to_controller: bool = False
    controller_packets: tuple[Mapping[str, int], ...] = ()
    ttl_expired: bool = False
    meters: tuple[int, ...] = ()  # the meters the packet passed, in order

    @property
    def ports(self) -> tuple[int, ...]:
        return tuple(e.port for e in self.outputs)

    @property
    def dropped(self) -> bool:
        return not self.outputs and not self.to_controller


@dataclass
class _Run:
    outputs: list[Emitted] = field(default_factory=list)
    controller: list[Packet] = field(default_factory=list)
    ttl_expired: bool = False


@dataclass(frozen=True)
class _Group:
    """A group normalised for processing: select or not, and (weight, actions) per bucket."""

    select: bool
    buckets: tuple[tuple[int, Bucket], ...]


def _normalise(group_id: int, group: GroupDef) -> _Group:
    if isinstance(group, GroupSpec):
        buckets = tuple((b.weight, tuple(b.actions)) for b in group.buckets)
        if group.type is GroupType.INDIRECT:
            if len(buckets) != 1:  # OFPGMFC_INVALID_GROUP on a switch
                raise ModelError(f"indirect group {group_id:#x} must have exactly one bucket: {group}")
            return _Group(False, buckets)
        if group.type is GroupType.SELECT:
            if any(w < 0 for w, _ in buckets) or (buckets and not sum(w for w, _ in buckets)):
                raise ModelError(f"select group {group_id:#x} without a positive weight: {group}")
            return _Group(True, buckets)
        raise ModelError(f"group type {group.type} is not modelled")
    buckets = tuple((1, tuple(b)) for b in group)
    return _Group(len(buckets) > 1, buckets)


class OFTable:
    """Flows keyed by (table, priority, match), as a switch keys them, plus groups keyed by id.

    The constructor takes any state as given, consistent or not (a flow may name a missing
    group: processing it raises). `apply` plays flow and group modifications as an OpenFlow 1.3
    switch does, and records what a switch would answer with an error in `errors`, leaving its
    state unchanged; with `strict` (the default) the first such error raises ModelError.

    `invalid_ttl_to_controller` models a controller that asked for OFPR_INVALID_TTL packet-ins
    (taprouter does, through its async config): a dec_ttl that expires sends the packet, as it is
    at that point, to the controller. Without it the packet is only dropped.
    """

    def __init__(self, flows: Iterable[Flow] = (), groups: Mapping[int, GroupDef] | None = None,
                 *, strict: bool = True, invalid_ttl_to_controller: bool = False):
        self._flows: dict[Key, Flow] = {flow.key: flow for flow in flows}
        self.groups: dict[int, GroupDef] = {}
        self._groups: dict[int, _Group] = {}
        for gid, group in (groups or {}).items():
            self._set_group(gid, group)
        self.strict = strict
        self.invalid_ttl_to_controller = invalid_ttl_to_controller
        self.errors: list[str] = []
        self._changes = 0
        self._index: tuple | None = None

    # --- state ---------------------------------------------------------------------------------

    def _set_group(self, group_id: int, group: GroupDef) -> None:
        normalised = _normalise(group_id, group)
        self.groups[group_id] = group if isinstance(group, GroupSpec) else tuple(tuple(b) for b in group)
        self._groups[group_id] = normalised

    def _error(self, message: str) -> None:
        self.errors.append(message)
        if self.strict:
            raise ModelError(message)

    def _missing_groups(self, actions: Sequence[Action]) -> list[int]:
        return [a.group_id for a in actions if isinstance(a, ToGroup) and a.group_id not in self._groups]

    def apply(self, ops: Iterable[FlowOp | GroupOp]) -> None:
        for op in ops:
            if isinstance(op, GroupOp):
                self._apply_group(op)
            else:
                self._apply_flow(op)

    def _apply_flow(self, op: FlowOp) -> None:
        self._changes += 1
        key = op.flow.key
        if op.op in (Op.ADD, Op.MODIFY):
            missing = self._missing_groups(op.flow.actions)
            if missing:  # OFPBAC_BAD_OUT_GROUP: the switch refuses the whole flow-mod
                self._error(f"{op.op.value} of a flow naming missing group(s) {missing}: {op.flow}")
                return
        if op.op is Op.ADD:
            self._flows[key] = op.flow
        elif op.op is Op.MODIFY:
            current = self._flows.get(key)
            # OpenFlow 1.3: modifying a missing flow does nothing, and modify keeps the cookie.
            if current is not None:
                self._flows[key] = Flow(current.table, current.priority, current.match,
                                        op.flow.actions, op.flow.goto, op.flow.meter, current.cookie)
        elif op.op is Op.DELETE:
            self._flows.pop(key, None)
        else:
            raise ModelError(f"unknown op {op.op}")

    def _apply_group(self, op: GroupOp) -> None:
        gid = op.group_id
        if op.op in (Op.ADD, Op.MODIFY):
            if op.op is Op.ADD and gid in self._groups:  # OFPGMFC_GROUP_EXISTS
                self._error(f"add of existing group {gid:#x}")
                return
            if op.op is Op.MODIFY and gid not in self._groups:  # OFPGMFC_UNKNOWN_GROUP
                self._error(f"modify of missing group {gid:#x}")
                return
            try:
                self._set_group(gid, op.spec)
            except ModelError as exc:  # a group the switch refuses (OFPGMFC_INVALID_GROUP ...)
                self._error(str(exc))
        elif op.op is Op.DELETE:
            # OpenFlow 1.3: deleting a missing group is no error; deleting a group removes
            # every flow that forwards to it.
            if self._groups.pop(gid, None) is not None:
                del self.groups[gid]
                self._changes += 1
                for key in [k for k, f in self._flows.items() if ToGroup(gid) in f.actions]:
                    del self._flows[key]
        else:
            raise ModelError(f"unknown op {op.op}")

    def snapshot(self) -> frozenset[Flow]:
        return frozenset(self._flows.values())

    def group_snapshot(self) -> dict[int, GroupDef]:
        return dict(self.groups)

    def __len__(self) -> int:
        return len(self._flows)

    # --- packets -------------------------------------------------------------------------------

    def _by_table(self) -> dict[int, tuple[list[Flow], tuple[str, ...], dict]]:
        """Per table: its flows, highest priority first; the fields they match on; and a memo of
        lookups keyed by the packet's values of those fields. Rebuilt after the flows change."""
        if self._index is None or self._index[0] != self._changes:
            tables: dict[int, list[Flow]] = {}
            for flow in self._flows.values():
                tables.setdefault(flow.table, []).append(flow)
            index = {}
            for table, flows in tables.items():
                flows.sort(key=lambda f: -f.priority)
                names = tuple(sorted({m.name for f in flows for m in f.match.fields}))
                index[table] = (flows, names, {})
            self._index = (self._changes, index)
        return self._index[1]

    def lookup(self, table: int, packet: Mapping[str, int]) -> Flow | None:
        """The highest-priority flow in a table that matches, or None on a table miss."""
        entry = self._by_table().get(table)
        if entry is None:
            return None
        flows, names, memo = entry
        if "vlan_vid" in names and "vlan_vid" not in packet:
            packet = {**packet, "vlan_vid": OFPVID_NONE}  # a packet given without a tag is untagged
        key = tuple(packet.get(name) for name in names)
        if key in memo:
            return memo[key]
        winners: list[Flow] = []
        for flow in flows:
            if winners and flow.priority < winners[0].priority:
                break
            if flow.match.matches(packet):
                winners.append(flow)
        if len(winners) > 1:
            raise ModelError(f"overlapping flows at priority {winners[0].priority} in table {table}: {winners}")
        memo[key] = winners[0] if winners else None
        return memo[key]

    def process(self, packet: Mapping[str, int]) -> Fate:
        """Run a packet through the pipeline from table 0."""
        pkt: Packet = dict(packet)
        run = _Run()
        meters: list[int] = []
        table = 0
        while True:
            flow = self.lookup(table, pkt)
            if flow is None:
                break  # table miss drops
            if flow.meter is not None:
                meters.append(flow.meter)
            if not self._actions(flow.actions, pkt, run, depth=0):
                break
            if flow.goto is None:
                break
            if flow.goto <= table:
                raise ModelError(f"goto from table {table} to {flow.goto} does not go forward: {flow}")
            table = flow.goto
        return Fate(tuple(run.outputs), bool(run.controller), tuple(run.controller), run.ttl_expired,
                    tuple(meters))

    def _actions(self, actions: Sequence[Action], pkt: Packet, run: _Run, depth: int) -> bool:
        """Apply actions in order; False when the packet is dropped (TTL expired)."""
        for action in actions:
            if isinstance(action, Output):
                if action.port == OFPP_CONTROLLER:
                    run.controller.append(dict(pkt))
                elif action.port != pkt.get("in_port"):
                    # A switch never sends a frame back out of its in_port unless told OFPP_IN_PORT.
                    run.outputs.append(Emitted(action.port, dict(pkt)))
            elif isinstance(action, PushVlan):
                if pkt.get("vlan_vid", OFPVID_NONE) & OFPVID_PRESENT:
                    raise ModelError(f"push_vlan on a tagged packet makes it double-tagged: {pkt}")
                pkt["vlan_vid"], pkt["vlan_pcp"] = OFPVID_PRESENT, 0
            elif isinstance(action, PopVlan):
                # Open vSwitch pops nothing off an untagged packet.
                pkt.pop("vlan_vid", None)
                pkt.pop("vlan_pcp", None)
            elif isinstance(action, SetField) and action.name == "vlan_vid" and \
                    not pkt.get("vlan_vid", OFPVID_NONE) & OFPVID_PRESENT:
                raise ModelError(f"set_field vlan_vid on an untagged packet does nothing in OpenFlow 1.3: {pkt}")
            elif isinstance(action, SetField):
                # Nicira's 16-bit in_port is the same pipeline field as OpenFlow's in_port.
                pkt["in_port" if action.name == "in_port_nxm" else action.name] = action.value
            elif isinstance(action, DecTtl):
                if "ttl" not in pkt:
                    raise ModelError(f"dec_ttl on a packet without a TTL: {pkt}")
                if pkt["ttl"] <= 1:
                    run.ttl_expired = True
                    if self.invalid_ttl_to_controller:
                        run.controller.append(dict(pkt))
                    return False
                pkt["ttl"] -= 1
            elif isinstance(action, ToGroup):
                self._group(action.group_id, pkt, run, depth)
            else:
                raise ModelError(f"unknown action {action!r}")
        return True

    def _group(self, group_id: int, pkt: Packet, run: _Run, depth: int) -> None:
        if depth >= MAX_GROUP_DEPTH:
            raise ModelError(f"group chain deeper than {MAX_GROUP_DEPTH} at group {group_id}")
        group = self._groups.get(group_id)
        if group is None:
            raise ModelError(f"flow refers to missing group {group_id}")
        if not group.buckets:
            return  # a group with no buckets drops
        if not group.select:
            bucket = group.buckets[0][1]
        else:
            # One flow, one bucket: the hash of the flow's fields picks a point on the buckets'
            # weights laid end to end; a bucket of weight 0 is never chosen.
            point = _bucket_hash(pkt) % sum(w for w, _ in group.buckets)
            for weight, bucket in group.buckets:
                if point < weight:
                    break
                point -= weight
        # Buckets act on a copy: what they rewrite does not leak back into the pipeline.
        self._actions(bucket, dict(pkt), run, depth + 1)


def _bucket_hash(pkt: Mapping[str, int]) -> int:
    text = ",".join(f"{name}={pkt[name]}" for name in HASH_FIELDS if name in pkt)
    return zlib.crc32(text.encode())
