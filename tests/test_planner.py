"""Planner.plan beyond the FIB (test_fib*.py): the order of a pass's route flows, meters, base flows
planned once per change of ports, and a read-back starting the planner over."""

from __future__ import annotations

import random

from fibharness import GW2, P2, Kernel, Switch, gateways, read_back, via
from taprouter import prefix
from taprouter.controller.openflow import pipeline
from taprouter.controller.openflow.meters import MeterSpec
from taprouter.controller.openflow.ops import Op
from taprouter.controller.planner.reconcile import KernelView, Planner, ReadBack, SwitchView
from taprouter.routing.model import MirrorChanges, RouteKind


def routes(kernel: Kernel, values: list[int], length: int = 24) -> Kernel:
    for value in values:
        kernel.route(str(prefix.to_network(prefix.pack(4, value, length))), via(GW2, P2))
    return kernel


def test_each_run_of_route_flows_goes_out_in_prefix_order():
    # Open vSwitch files every prefix in a trie: an insert right after its neighbour in the address
    # space is far cheaper than one at random (docs/performance.md).
    rng = random.Random(3)
    values = [rng.getrandbits(24) << 8 for _ in range(300)]
    k = routes(gateways(), values)
    sw = Switch()
    sw.sync(k)
    for value in values[:100]:  # withdrawn: a delete each
        k.unroute(str(prefix.to_network(prefix.pack(4, value, 24))))
    for value in values[100:150]:  # to the kernel: a modify each
        k.route(str(prefix.to_network(prefix.pack(4, value, 24))), kind=RouteKind.OTHER)
    routes(k, [rng.getrandbits(24) << 8 for _ in range(100)])  # new: an add each
    sw.sync(k)
    plan = sw.last
    assert all(plan.route_counts)
    start = 0
    for count, op in zip(plan.route_counts, (Op.ADD, Op.MODIFY, Op.DELETE)):
        run = plan.routes[start:start + count]
        assert {o for o, _, _ in run} == {op} and [pk for _, pk, _ in run] == sorted(pk for _, pk, _ in run)
        start += count


def test_meters_go_first_and_only_when_the_switch_lacks_them_or_has_them_wrong():
    k = gateways()
    empty = ReadBack({}, frozenset(), {}, {})
    planner = Planner()
    routes_now = k.mirror()
    view = KernelView(MirrorChanges({}, True, True, False, []), routes_now, lambda: list(routes_now.items()),
                      k.state())
    plan = planner.plan(view, SwitchView(k.port_inputs(), empty), now=0.0)
    want = pipeline.meters_for(p.number for p in k.port_inputs())
    assert want.keys() > pipeline.METERS.keys()  # the shared ones and each port's
    assert {(m.op, m.meter_id, m.spec) for m in plan.meters} == {(Op.ADD, i, s) for i, s in want.items()}
    quiet = KernelView(MirrorChanges({}, False, False, False, []), routes_now, lambda: [], k.state())
    assert planner.plan(quiet, SwitchView(k.port_inputs()), now=1.0).meters == []
    # A switch found holding one meter at another rate, one in a form we do not write, one missing.
    ids = sorted(want)
    found = {ids[0]: MeterSpec(1, 1), ids[1]: None}
    plan = Planner().plan(view, SwitchView(k.port_inputs(), ReadBack({}, frozenset(), {}, found)), now=0.0)
    assert {(m.op, m.meter_id) for m in plan.meters} == ({(Op.MODIFY, ids[0]), (Op.MODIFY, ids[1])}
                                                         | {(Op.ADD, i) for i in ids[2:]})


def test_base_flows_are_planned_again_only_when_ports_or_addresses_change():
    k = gateways()
    sw = Switch()
    sw.sync(k)
    s = sw.sync(routes(k, [0x0A630000]))  # a route: no base flow touched
    assert s.flow_ops and all(op.flow.cookie == pipeline.cookie(pipeline.Owner.ROUTE) for op in s.flow_ops)
    k.ports[P2.ifindex] = type(P2)(P2.ifindex, P2.number, P2.mac, P2.addresses + ("10.0.22.1/24",))
    s = sw.sync(k)  # an address: its punt flows come
    assert any(op.flow.cookie == pipeline.cookie(pipeline.Owner.PORT) and op.op is Op.ADD for op in s.flow_ops)


def test_a_read_back_starts_the_planner_over_from_what_the_switch_holds():
    k = routes(gateways(), [0x0A630000, 0x0A640000])
    sw = Switch()
    sw.sync(k)
    held = read_back(sw.table)
    # Pending work in the backlog belongs to the connection that is gone: the read-back replaces it.
    sw.planner.backlog.add({1 << 32: (0, None)}, [], False)
    routes_now = k.mirror()
    view = KernelView(MirrorChanges({}, False, False, False, []), routes_now, lambda: list(routes_now.items()),
                      k.state())
    plan = sw.planner.plan(view, SwitchView(k.port_inputs(), held), now=0.0)
    assert plan.adopted and plan.full and not plan and len(sw.planner.backlog) == 0


def test_punt_meters_follow_the_ports_and_the_shared_resolve_meter_of_old_goes():
    k = gateways()
    routes_now = k.mirror()
    view = KernelView(MirrorChanges({}, True, True, False, []), routes_now, lambda: list(routes_now.items()),
                      k.state())
    numbers = [p.number for p in k.port_inputs()]
    found = dict(pipeline.meters_for(numbers)) | {3: MeterSpec.pps(1000)}  # an older daemon's ARP/ND meter
    planner = Planner()
    plan = planner.plan(view, SwitchView(k.port_inputs(), ReadBack({}, frozenset(), {}, found)), now=0.0)
    assert plan.meters == [] and [(m.op, m.meter_id) for m in plan.meter_deletes] == [(Op.DELETE, 3)]
    # A port leaves: its meters go, after the flows that named them.
    gone = k.port_inputs()[-1]
    rest = [p for p in k.port_inputs() if p.number != gone.number]
    quiet = KernelView(MirrorChanges({}, False, False, False, []), routes_now, lambda: [], k.state())
    plan = planner.plan(quiet, SwitchView(rest), now=1.0)
    assert sorted(m.meter_id for m in plan.meter_deletes) == sorted(pipeline.port_meters(gone.number))
    assert any(op.op is Op.DELETE and op.flow.table == pipeline.Table.PUNT_POLICE for op in plan.late)
