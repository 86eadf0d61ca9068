"""Stale holding after an HA takeover, on the in-memory OpenFlow table: the new master's kernel lacks
the routes the old master's BIRD learnt; their flows keep forwarding until the sweep, routes that come
back are rewritten at once, and the sweep leaves the switch as a fresh daemon would want it."""

from __future__ import annotations

from fibharness import GW1, GW2, KERNEL, MAC1, MAC2, P1, P2, Kernel, apply, gateways, installed, read_back, via
from taprouter import prefix as pfx
from taprouter.controller.planner.reconcile import KernelView, Planner, SwitchView
from taprouter.routing.model import MirrorChanges


def plan(planner: Planner, k: Kernel, changes: MirrorChanges, read=None):
    routes, state = k.mirror(), k.state()
    return planner.plan(KernelView(changes, routes, lambda: list(routes.items()), state),
                        SwitchView(k.port_inputs(), read), now=0.0)


def pk(text: str) -> int:
    import ipaddress
    return pfx.from_network(ipaddress.ip_network(text))


LEARNT = ("10.9.0.0/16", "10.12.0.0/16", "2001:db8:77::/48")


def full() -> MirrorChanges:
    return MirrorChanges({}, True, True, False, [])


def old_master() -> Kernel:
    return (gateways().route("10.9.0.0/16", via(GW1, P1)).route("10.12.0.0/16", via(GW2, P2))
            .route("2001:db8:77::/48", via("2001:db8:2::1", P2)))


def test_takeover_holds_then_rewrites_then_sweeps():
    sw = installed(old_master())
    assert sw.send("10.9.1.1") == (P1.number, MAC1) and sw.send("10.12.1.1") == (P2.number, MAC2)
    flows_before = sw.table.snapshot()

    # The standby's kernel: connected routes only, no neighbours resolved, no BGP routes.
    k = Kernel()
    planner = Planner()
    planner.hold_next = True
    first = plan(planner, k, full(), read_back(sw.table))
    apply(sw.table, first)
    # The learnt routes, and the host flows of the neighbours this kernel has not resolved yet.
    assert {pk(t) for t in LEARNT} <= planner.stale.routes.keys()
    held = len(planner.stale)
    assert sw.send("10.9.1.1") == (P1.number, MAC1) and sw.send("10.12.1.1") == (P2.number, MAC2)
    assert {f for f in flows_before if f.table in (3, 4)} <= set(sw.table.snapshot())  # no route flow went

    # BIRD relearns 10.9/16, its next hop resolved: an add over the stale flow, at once.
    gateways(k).route("10.9.0.0/16", via(GW1, P1))
    routes = k.mirror()
    back = plan(planner, k, MirrorChanges({pk: e for pk, e in routes.items()}, True, False, False, []))
    apply(sw.table, back)
    assert pk("10.9.0.0/16") not in planner.stale.routes and pk("10.12.0.0/16") in planner.stale.routes
    assert len(planner.stale) < held
    assert sw.send("10.9.1.1") == (P1.number, MAC1) and sw.send("10.12.1.1") == (P2.number, MAC2)
    # A new group never takes a held group's id.
    held_groups = set(planner.stale.groups)
    assert not held_groups & {op.group_id for op in back.group_upserts}

    sweep = planner.sweep_stale()
    assert sweep.route_counts[2] >= 2 and not planner.stale
    apply(sw.table, sweep)
    assert sw.send("10.9.1.1") == (P1.number, MAC1)
    assert sw.send("10.12.1.1") == KERNEL  # not relearnt: swept, so the kernel answers it
    assert not held_groups & set(sw.table.groups)

    # What is left is exactly what a fresh daemon with this kernel wants: it would change nothing.
    fresh = Planner()
    assert not plan(fresh, k, full(), read_back(sw.table))


def test_without_hold_a_takeover_deletes_at_once():
    sw = installed(old_master())
    planner = Planner()
    apply(sw.table, plan(planner, Kernel(), full(), read_back(sw.table)))
    assert planner.stale is None and sw.send("10.9.1.1") == KERNEL


def test_a_second_read_back_decides_again():
    sw = installed(old_master())
    k = Kernel()
    planner = Planner()
    planner.hold_next = True
    apply(sw.table, plan(planner, k, full(), read_back(sw.table)))
    assert planner.stale
    # A resync's read-back (an error, a reconnect) plans from what the switch holds, without holding.
    apply(sw.table, plan(planner, k, full(), read_back(sw.table)))
    assert not planner.stale and sw.send("10.12.1.1") == KERNEL
