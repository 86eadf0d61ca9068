"""Backlog: how many changed prefixes one reconcile pass takes; a load's in slices, withdrawals whole."""

from __future__ import annotations

import ipaddress

from fibharness import GW2, MAC2, P2, Kernel, Switch, gateways, via
from taprouter.controller.backlog import Backlog

ENTRY = (0, None)


def changes(start: int, count: int, entry=ENTRY) -> dict:
    return {pk: entry for pk in range(start, start + count)}


def drain(backlog: Backlog) -> list[tuple[dict, list]]:
    parts = []
    while len(backlog):
        parts.append(backlog.take())
    return parts


def test_routes_come_a_limit_at_a_time_each_prefix_once_with_its_entry():
    backlog = Backlog(limit=10)
    backlog.add(changes(0, 25), [], withdrawn=False)
    parts = drain(backlog)
    assert [len(p) for p, gone in parts] == [10, 10, 5] and all(gone == [] for p, gone in parts)
    taken = {pk: entry for part, _ in parts for pk, entry in part.items()}
    assert taken == changes(0, 25) and backlog.take() == ({}, [])


def test_a_later_change_of_a_pending_prefix_replaces_its_entry():
    backlog = Backlog(limit=10)
    backlog.add(changes(0, 25), [], withdrawn=False)
    assert backlog.take() == (changes(15, 10), [])  # the latest first
    newer = (5, None)
    backlog.add({0: newer, 1: newer, 100: newer}, [], withdrawn=False)
    rest = {pk: entry for part, _ in drain(backlog) for pk, entry in part.items()}
    assert rest == {**changes(0, 15), 0: newer, 1: newer, 100: newer}


def test_the_latest_change_goes_first():
    backlog = Backlog(limit=10)
    backlog.add(changes(0, 25), [], withdrawn=False)
    backlog.add({1000: ENTRY}, [], withdrawn=False)  # a single change arriving behind a load
    assert 1000 in backlog.take()[0]


def test_a_withdrawal_is_taken_whole_with_whatever_is_pending():
    backlog = Backlog(limit=10)
    backlog.add(changes(0, 25), [], withdrawn=False)
    backlog.take()
    backlog.add({}, list(range(30, 60)), withdrawn=True)
    whole, gone = backlog.take()
    assert len(whole) == 15 and gone == list(range(30, 60)) and len(backlog) == 0
    backlog.add(changes(100, 25), [], withdrawn=False)  # taken whole once: routes are sliced again
    assert len(backlog.take()[0]) == 10


def test_a_pending_route_that_is_withdrawn_since_goes_and_one_that_came_back_stays():
    backlog = Backlog(limit=10)
    backlog.add(changes(0, 25), [], withdrawn=False)
    backlog.take()  # 15 to 24
    backlog.add({}, [3, 4, 40], withdrawn=True)  # 3 and 4 were pending: their entries are stale
    backlog.add({4: ENTRY, 41: ENTRY}, [41], withdrawn=True)  # 4 came back; 41 went and came back
    changed, gone = backlog.take()
    assert changed == {**{pk: ENTRY for pk in range(15) if pk != 3}, 4: ENTRY, 41: ENTRY}
    assert gone == [3, 4, 40, 41] and len(backlog) == 0  # FibState.sync: one in changed is back


def test_under_the_limit_a_pass_takes_the_mirrors_map_itself():
    backlog, changed, gone = Backlog(limit=10), changes(0, 10), [99]
    backlog.add(changed, gone, withdrawn=True)
    taken = backlog.take()
    assert taken[0] is changed and taken[1] is gone and len(backlog) == 0


def test_clear_drops_what_is_pending():
    backlog = Backlog(limit=10)
    backlog.add(changes(0, 25), [30], withdrawn=True)
    backlog.clear()
    assert len(backlog) == 0 and backlog.take() == ({}, [])


def forwarding(sync) -> dict:
    """Each destination's group content (or PUNT): group ids depend on the order passes made them."""
    return {dst: sync.want.groups.get(t, t) for dst, t in sync.targets.items()}


def nets(count: int, base: str = "20.0.0.0") -> list[str]:
    start = int(ipaddress.ip_address(base))
    return [f"{ipaddress.ip_address(start + (i << 8))}/24" for i in range(count)]


def test_a_load_in_slices_ends_where_one_pass_would_and_its_withdrawal_goes_in_one():
    """On the table model: each slice's pass leaves the switch as the FIB state says, and the
    last leaves it as a restarted daemon would plan it (fibharness checks both)."""
    k, routes = gateways(), nets(95)
    sw, backlog = Switch(), Backlog(limit=20)
    sw.sync(k, backlog=backlog)  # the connected routes, in one pass
    for net in routes:
        k.route(net, via(GW2, P2))
    s = sw.sync(k, backlog=backlog)
    assert sw.passes == [20, 20, 20, 20, 15]
    assert forwarding(s) == forwarding(Switch().sync(k))  # as one pass would have it
    assert sw.send("20.0.93.7") == (P2.number, MAC2)
    for net in routes[:80]:
        k.unroute(net)
    k.route("30.0.0.0/24", via(GW2, P2))
    s = sw.sync(k, backlog=backlog)
    assert sw.passes == [81]  # a withdrawal: one pass, with the route that came alongside
    assert forwarding(s) == forwarding(Switch().sync(k))


def test_routes_to_an_unresolved_gateway_in_slices_end_where_one_pass_would():
    # No neighbour resolved: every route waits on its gateway, which slicing must not change.
    k = Kernel()
    for net in nets(30):
        k.route(net, via(GW2, P2))
    sw = Switch()
    s = sw.sync(k, backlog=Backlog(limit=7))
    assert sw.passes[:-1] == [7] * (len(sw.passes) - 1) and sum(sw.passes) >= 30
    assert forwarding(s) == forwarding(Switch().sync(k))
