"""What goes to the switch for one reconcile pass, in which order, and in which writes."""

from __future__ import annotations

from . import wire
from .fibstate import Changes
from .pipeline import Table
from .reconcile import FlowOp, Op

SEND_CHUNK = 256 * 1024
FIB_TABLES = (Table.FIB4, Table.FIB6)


def send_batched(dp, messages: list[bytes]) -> None:
    """Open vSwitch takes flow_mods 5-7 times faster in large writes than one per write."""
    chunk: list[bytes] = []
    size = 0
    for message in messages:
        chunk.append(message)
        size += len(message)
        if size >= SEND_CHUNK:
            dp.send(b"".join(chunk))
            chunk, size = [], 0
    if chunk:
        dp.send(b"".join(chunk))


def split_deletes(flow_ops: list[FlowOp]) -> tuple[list[FlowOp], list[FlowOp]]:
    """(what goes before the route flows, what goes after): deletes outside the FIB tables go last,
    so no punt flow leaves a gap; a stale flow in a FIB table goes first, as the route flow for
    its prefix may take its place (table, priority and match) in the same batch."""
    late = [op for op in flow_ops if op.op is Op.DELETE and op.flow.table not in FIB_TABLES]
    early = [op for op in flow_ops if not (op.op is Op.DELETE and op.flow.table not in FIB_TABLES)]
    return early, late


def send(dp, changes: Changes, flow_ops: list[FlowOp]) -> None:
    """Groups before the flows that use them, route flows, stale flows, groups nobody uses, barrier.

    Struct templates throughout: byte-identical to os-ken's objects (tests/test_wire.py), 50x cheaper.
    """
    early, late = split_deletes(flow_ops)
    encode_route = wire.encode_route
    messages = [wire.encode_group_mod(op) for op in changes.group_upserts]
    messages += [wire.encode_flow_mod(op) for op in early]
    messages += [encode_route(op, pk, target) for op, pk, target in changes.routes]
    messages += [wire.encode_flow_mod(op) for op in late]
    messages += [wire.encode_group_mod(op) for op in changes.group_deletes]
    barrier = dp.ofproto_parser.OFPBarrierRequest(dp)
    dp.set_xid(barrier)
    barrier.serialize()
    messages.append(bytes(barrier.buf))
    send_batched(dp, messages)
