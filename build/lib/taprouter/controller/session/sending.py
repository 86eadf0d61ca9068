"""One reconcile pass onto the wire: its operations encoded in the planner's order, many route deletes
as one bundle, a barrier at the end, in large writes."""

from __future__ import annotations

import itertools

from ..openflow import wire
from ..openflow.ops import Op
from ..planner.reconcile import Pass

SEND_MESSAGES = 2048  # a route flow_mod is 80-140 bytes (more in a bundle): writes of 160-350 KB
# Open vSwitch 3.1 took about twice as long per route flow delete sent one flow_mod at a time as
# inside a bundle (adds are the other way round), so a pass with at least this many route
# deletes sends them as one bundle (docs/performance.md).
BUNDLE_DELETES = 64
_bundle_ids = itertools.count(1)


def send_batched(dp, messages: list[bytes]) -> None:
    """Open vSwitch takes flow_mods 5-7 times faster in large writes than one per write. Each write
    holds whole messages (the relay's PacketOuts share the connection), counted rather than sized:
    a length per message cost a tenth of the encoding."""
    for start in range(0, len(messages), SEND_MESSAGES):
        dp.send(b"".join(messages[start:start + SEND_MESSAGES]))


def encode(plan: Pass, bundles: bool = True) -> list[bytes]:
    """The pass's messages, barrier excluded. `bundles`: False once the switch refused one."""
    messages = [wire.encode_meter_mod(op) for op in plan.meters]
    messages += [wire.encode_group_mod(op) for op in plan.group_upserts]
    messages += [wire.encode_flow_mod(op) for op in plan.early]
    routes, (adds, modifies, deletes) = plan.routes, plan.route_counts
    messages += wire.encode_routes(Op.ADD, routes[:adds])
    messages += wire.encode_routes(Op.MODIFY, routes[adds:adds + modifies])
    gone = routes[adds + modifies:]
    if deletes < BUNDLE_DELETES or not bundles:
        messages += wire.encode_routes(Op.DELETE, gone)
    else:
        bundle_id = next(_bundle_ids) & 0xFFFFFFFF
        messages.append(wire.encode_bundle_control(wire.BUNDLE_OPEN, bundle_id))
        messages += wire.encode_routes(Op.DELETE, gone, bundle_id)  # xid 0, as each head says
        messages.append(wire.encode_bundle_control(wire.BUNDLE_COMMIT, bundle_id))
    messages += [wire.encode_flow_mod(op) for op in plan.late]
    messages += [wire.encode_group_mod(op) for op in plan.group_deletes]
    messages += [wire.encode_meter_mod(op) for op in plan.meter_deletes]
    return messages


def send(dp, plan: Pass, bundles: bool = True) -> int:
    """Write the pass and a barrier behind it; returns the barrier's xid."""
    messages = encode(plan, bundles)
    barrier = dp.ofproto_parser.OFPBarrierRequest(dp)
    dp.set_xid(barrier)
    barrier.serialize()
    messages.append(bytes(barrier.buf))
    send_batched(dp, messages)
    return barrier.xid
