"""FIB misses reach the kernel through the meters of the port they came in on, and a switch holding
the former shared-meter form is brought over by modifies, with a restart after it changing nothing."""

from __future__ import annotations

import dataclasses

import pytest

from fibharness import (GW1, GW1_6, GW2, HOST, P1, P2, Kernel, Switch, former_route_flow, installed, packet, read_back,
                        via)
from oftable import OFTable
from taprouter import prefix as pfx
from taprouter.controller.openflow import pipeline
from taprouter.controller.openflow.flows import to_controller
from taprouter.controller.openflow.ops import Op

UNROUTED = ("192.0.2.1", "2001:db8:77::1")  # no route at all: the FIB tables' miss
UNRESOLVED = ("10.9.0.1", "2001:db8:99::1")  # routes whose gateway has no neighbour entry yet


def kernel() -> Kernel:
    return Kernel().route("10.9.0.0/16", via(GW1, P1)).route("2001:db8:99::/48", via(GW1_6, P1))


def local_meter(port) -> int:
    return pipeline.port_meters(port.number)[1]


@pytest.mark.parametrize("dst", UNROUTED + UNRESOLVED)
def test_a_fib_miss_goes_through_the_meter_of_its_ingress_port(dst):
    sw = installed(kernel())
    seen = {}
    for port in (P1, P2, HOST):
        fate = sw.table.process(packet(dst, in_port=port))
        assert fate.to_controller and not fate.outputs, fate
        seen[port.number] = fate.meters
    # One meter each, the port's own: a flood from one port cannot spend another's.
    assert seen == {p.number: (local_meter(p),) for p in (P1, P2, HOST)}
    assert pipeline.SLOW_PATH_METER not in {m for meters in seen.values() for m in meters}


def test_a_port_without_meters_of_its_own_shares_the_punt_meter():
    sw = installed(kernel())
    stranger = dataclasses.replace(P2, number=pipeline.PORT_METER_MAX)  # out of the meter range
    flows = [f for f in sw.table.snapshot() if f.table == pipeline.Table.INGRESS and
             any(m.name == "in_port" and m.value == P2.number for m in f.match.fields)]
    moved = [dataclasses.replace(f, match=f.match.__class__.of(
        *(dataclasses.replace(m, value=stranger.number) if m.name == "in_port" else m for m in f.match.fields)))
        for f in flows]
    table = OFTable(sw.table.snapshot() | set(moved), sw.table.group_snapshot(), invalid_ttl_to_controller=True)
    fate = table.process(packet(UNROUTED[0], in_port=stranger))
    assert fate.to_controller and fate.meters == (pipeline.PUNT_METER,)


def former(sw: Switch) -> OFTable:
    """The switch as the daemon before per-port FIB-miss policing left it: every flow to the kernel
    (route flows and the FIBs' misses) through shared meter 1 straight to the controller."""
    flows = set()
    for flow in sw.table.snapshot():
        if flow.goto == pipeline.Table.PUNT_POLICE and flow.table in (pipeline.Table.FIB4, pipeline.Table.FIB6):
            flow = dataclasses.replace(flow, goto=None, actions=(to_controller(),), meter=pipeline.SLOW_PATH_METER)
        flows.add(flow)
    return OFTable(flows, sw.table.group_snapshot(), invalid_ttl_to_controller=True)


def test_an_upgrade_modifies_the_former_flows_in_place_and_then_changes_nothing():
    k = kernel().route("10.8.0.0/16", via(GW2, P2))  # P2's gateway unresolved too; a connected subnet each
    sw = installed(k)
    kernel_prefixes = {pk for pk, t in sw.fib.targets.items() if type(t) is not int or t == pipeline.KERNEL}
    assert len(kernel_prefixes) >= 4  # the unresolved routes and the connected subnets
    old = former(sw)
    assert {pk for f in old.snapshot() for pk in kernel_prefixes if f == former_route_flow(pk)} == kernel_prefixes
    upgraded = Switch(table=old, meters=dict(pipeline.METERS))
    upgraded.sync(k, adopt=True)  # Switch.sync also checks that a restart after it changes nothing
    plan = upgraded.last
    assert plan.adopted
    # Route flows: modified, never deleted and added again (a gap in forwarding).
    assert plan.route_counts == (0, len(kernel_prefixes), 0)
    assert {pk for op, pk, t in plan.routes} == kernel_prefixes
    assert all(op is Op.MODIFY and t == pipeline.KERNEL for op, _pk, t in plan.routes)
    # The FIBs' own misses: modified too.
    base = [op for op in plan.early + plan.late if op.flow.table in (pipeline.Table.FIB4, pipeline.Table.FIB6)]
    assert len(base) == 2 and all(op.op is Op.MODIFY for op in base), base
    assert upgraded.table.snapshot() == sw.table.snapshot()
    for dst in UNROUTED + UNRESOLVED:
        fate = upgraded.table.process(packet(dst, in_port=P2))
        assert fate.to_controller and fate.meters == (local_meter(P2),)
    # Read back once more: nothing to do.
    again = Switch(table=upgraded.table, meters=upgraded.meters)
    again.sync(k, adopt=True)
    assert not again.last.routes and not again.last.early and not again.last.late


def test_a_former_flow_reads_back_as_rewrite():
    pk = pfx.pack(4, 0x0A090000, 16)
    table = OFTable([former_route_flow(pk)], invalid_ttl_to_controller=True)
    assert read_back(table).routes == {pk: pipeline.REWRITE}
