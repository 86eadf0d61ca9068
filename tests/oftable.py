"""An in-memory OpenFlow 1.3 table model that runs packets through taprouter's typed flows."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

from taprouter.controller.flows import (OFPP_CONTROLLER, Action, DecTtl, Flow, Match, Output,
                                        SetField, ToGroup)
from taprouter.controller.reconcile import FlowOp, Op

Packet = dict[str, int]
Bucket = tuple[Action, ...]
Key = tuple[int, int, Match]

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


class OFTable:
    """Flows keyed by (table, priority, match), as a switch keys them, plus optional groups."""

    def __init__(self, flows: Iterable[Flow] = (),
                 groups: Mapping[int, Sequence[Bucket]] | None = None):
        self._flows: dict[Key, Flow] = {}
        self.groups: dict[int, tuple[Bucket, ...]] = {
            gid: tuple(tuple(b) for b in buckets) for gid, buckets in (groups or {}).items()}
        for flow in flows:
            self.apply([FlowOp(Op.ADD, flow)])

    # --- state ---------------------------------------------------------------------------------

    def apply(self, ops: Iterable[FlowOp]) -> None:
        for op in ops:
            key = op.flow.key
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

    def snapshot(self) -> frozenset[Flow]:
        return frozenset(self._flows.values())

    def __len__(self) -> int:
        return len(self._flows)

    # --- packets -------------------------------------------------------------------------------

    def lookup(self, table: int, packet: Mapping[str, int]) -> Flow | None:
        """The highest-priority flow in a table that matches, or None on a table miss."""
        hits = [f for f in self._flows.values() if f.table == table and f.match.matches(packet)]
        if not hits:
            return None
        best = max(f.priority for f in hits)
        winners = [f for f in hits if f.priority == best]
        if len(winners) > 1:
            raise ModelError(f"overlapping flows at priority {best} in table {table}: {winners}")
        return winners[0]

    def process(self, packet: Mapping[str, int]) -> Fate:
        """Run a packet through the pipeline from table 0."""
        pkt: Packet = dict(packet)
        run = _Run()
        table = 0
        while True:
            flow = self.lookup(table, pkt)
            if flow is None:
                break  # table miss drops
            if not self._actions(flow.actions, pkt, run, depth=0):
                break
            if flow.goto is None:
                break
            if flow.goto <= table:
                raise ModelError(f"goto from table {table} to {flow.goto} does not go forward: {flow}")
            table = flow.goto
        return Fate(tuple(run.outputs), bool(run.controller), tuple(run.controller), run.ttl_expired)

    def _actions(self, actions: Sequence[Action], pkt: Packet, run: _Run, depth: int) -> bool:
        """Apply actions in order; False when the packet is dropped (TTL expired)."""
        for action in actions:
            if isinstance(action, Output):
                if action.port == OFPP_CONTROLLER:
                    run.controller.append(dict(pkt))
                elif action.port != pkt.get("in_port"):
                    # A switch never sends a frame back out of its in_port unless told OFPP_IN_PORT.
                    run.outputs.append(Emitted(action.port, dict(pkt)))
            elif isinstance(action, SetField):
                pkt[action.name] = action.value
            elif isinstance(action, DecTtl):
                if "ttl" not in pkt:
                    raise ModelError(f"dec_ttl on a packet without a TTL: {pkt}")
                if pkt["ttl"] <= 1:
                    run.ttl_expired = True
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
        buckets = self.groups.get(group_id)
        if buckets is None:
            raise ModelError(f"flow refers to missing group {group_id}")
        if not buckets:
            return  # a group with no buckets drops
        bucket = buckets[0] if len(buckets) == 1 else buckets[_bucket_hash(pkt) % len(buckets)]
        # Buckets act on a copy: what they rewrite does not leak back into the pipeline.
        self._actions(bucket, dict(pkt), run, depth + 1)


def _bucket_hash(pkt: Mapping[str, int]) -> int:
    text = ",".join(f"{name}={pkt[name]}" for name in HASH_FIELDS if name in pkt)
    return zlib.crc32(text.encode())
