"""Backlog: how many changed prefixes one reconcile pass takes; a load's in slices, withdrawals whole."""

from __future__ import annotations

import ipaddress
import random

import pytest

from fibharness import GW2, MAC2, P2, Kernel, Switch, gateways, via
from taprouter.controller.planner.backlog import Backlog
from taprouter.routing.mirror import KernelMirror

ENTRY = (0, None)


def changes(start: int, count: int, entry=ENTRY) -> dict:
    return {pk: entry for pk in range(start, start + count)}


def take(backlog: Backlog) -> tuple[dict, list]:
    changed, gone = backlog.take()
    return dict(changed), gone


def drain(backlog: Backlog) -> list[tuple[dict, list]]:
    parts = []
    while len(backlog):
        parts.append(take(backlog))
    return parts


def test_routes_come_a_limit_at_a_time_each_prefix_once_with_its_entry():
    backlog = Backlog(limit=10)
    backlog.add(changes(0, 25), [], withdrawn=False)
    parts = drain(backlog)
    assert parts == [(changes(0, 10), []), (changes(10, 10), []), (changes(20, 5), [])]  # oldest first
    assert take(backlog) == ({}, [])


def test_a_later_change_of_a_pending_prefix_comes_in_a_later_pass():
    backlog = Backlog(limit=10)
    backlog.add(changes(0, 25), [], withdrawn=False)
    assert take(backlog) == (changes(0, 10), [])
    newer = (5, None)
    backlog.add({0: newer, 12: newer, 100: newer}, [], withdrawn=False)
    # 12 is pending in the load: the map waits its turn, and goes in a pass after 12's old entry.
    assert drain(backlog) == [(changes(10, 10), []), (changes(20, 5), []), ({0: newer, 12: newer, 100: newer}, [])]


def test_no_pass_takes_more_than_the_limit_even_a_map_that_goes_ahead():
    """A map that may go ahead of a load (up to AHEAD_ROUTES) is still one pass: with a limit
    below AHEAD_ROUTES it waits its turn and goes in slices (netns_tests/test_load_slices.py saw
    a pass of 768 with a limit of 100 when a load reached the daemon in two batches)."""
    backlog = Backlog(limit=100)
    backlog.add(changes(0, 2232), [], withdrawn=False)
    assert len(take(backlog)[0]) == 100
    backlog.add(changes(10_000, 768), [], withdrawn=False)  # the rest of the load, a batch behind
    parts = drain(backlog)
    assert max(len(part) for part, _ in parts) == 100, [len(part) for part, _ in parts]
    assert sum(len(part) for part, _ in parts) == 2232 - 100 + 768


def test_a_small_change_behind_a_load_goes_first_when_it_touches_nothing_pending():
    backlog = Backlog(limit=10)
    backlog.add(changes(0, 25), [], withdrawn=False)
    single = {1000: ENTRY}
    backlog.add(single, [], withdrawn=False)  # a single change arriving behind a load
    assert take(backlog) == (single, [])
    assert [len(part) for part, _ in drain(backlog)] == [10, 10, 5]
    # Behind nothing much it waits, and goes in the same pass.
    backlog.add(changes(0, 5), [], withdrawn=False)
    backlog.add(single, [], withdrawn=False)
    assert drain(backlog) == [({**changes(0, 5), **single}, [])]


def test_maps_that_fit_go_in_one_pass():
    backlog = Backlog(limit=10)
    for start in range(0, 12, 3):
        backlog.add(changes(start, 3), [], withdrawn=False)
    assert drain(backlog) == [(changes(0, 9), []), (changes(9, 3), [])]


def test_a_withdrawal_is_taken_whole_with_whatever_is_pending():
    backlog = Backlog(limit=10)
    backlog.add(changes(0, 25), [], withdrawn=False)
    backlog.take()
    backlog.add({}, list(range(30, 60)), withdrawn=True)
    assert take(backlog) == (changes(10, 15), list(range(30, 60))) and len(backlog) == 0
    backlog.add(changes(100, 25), [], withdrawn=False)  # taken whole once: routes are sliced again
    assert len(take(backlog)[0]) == 10


def test_a_pending_route_withdrawn_since_goes_and_one_back_since_stays():
    backlog = Backlog(limit=10)
    backlog.add(changes(0, 25), [], withdrawn=False)
    backlog.take()  # 0 to 9
    backlog.add({}, [13, 14, 40], withdrawn=True)  # 13 and 14 were pending: their entries are stale
    backlog.add({14: ENTRY, 41: ENTRY}, [41], withdrawn=True)  # 14 came back; 41 went and came back
    changed, gone = take(backlog)
    assert changed == {**{pk: ENTRY for pk in range(10, 25) if pk != 13}, 14: ENTRY, 41: ENTRY}
    assert gone == [13, 40] and len(backlog) == 0  # only those without a route now


def test_under_the_limit_a_pass_takes_the_mirrors_map_and_list_themselves():
    backlog, changed, gone = Backlog(limit=10), changes(0, 10), [99]
    backlog.add(changed, [], withdrawn=False)
    taken = backlog.take()[0]
    changed[50] = ENTRY
    assert (50, ENTRY) in taken and len(backlog) == 0  # a view of the mirror's map: no copy
    backlog.add({}, gone, withdrawn=True)
    assert len(backlog) == 1 and backlog.take()[1] is gone and len(backlog) == 0


def test_clear_drops_what_is_pending():
    backlog = Backlog(limit=10)
    backlog.add(changes(0, 25), [30], withdrawn=True)
    backlog.clear()
    assert len(backlog) == 0 and take(backlog) == ({}, [])


def forwarding(sync) -> dict:
    """Each destination's group content (or pipeline.KERNEL): group ids depend on the order passes made them."""
    return {dst: sync.want.groups.get(t, t) for dst, t in sync.targets.items()}


def nets(count: int, base: str = "20.0.0.0") -> list[str]:
    start = int(ipaddress.ip_address(base))
    return [f"{ipaddress.ip_address(start + (i << 8))}/24" for i in range(count)]


def test_a_load_in_slices_ends_where_one_pass_would_and_its_withdrawal_goes_in_one():
    """On the table model: each slice's pass leaves the switch as the FIB state says, and the
    last leaves it as a restarted daemon would plan it (fibharness checks both)."""
    k, routes = gateways(), nets(95)
    sw = Switch(pass_routes=20)
    sw.sync(k)  # the connected routes, in one pass
    for net in routes:
        k.route(net, via(GW2, P2))
    s = sw.sync(k)
    assert sw.passes == [20, 20, 20, 20, 15]
    assert forwarding(s) == forwarding(Switch().sync(k))  # as one pass would have it
    assert sw.send("20.0.93.7") == (P2.number, MAC2)
    for net in routes[:80]:
        k.unroute(net)
    k.route("30.0.0.0/24", via(GW2, P2))
    s = sw.sync(k)
    assert sw.passes == [81]  # a withdrawal: one pass, with the route that came alongside
    assert forwarding(s) == forwarding(Switch().sync(k))


def test_routes_to_an_unresolved_gateway_in_slices_end_where_one_pass_would():
    # No neighbour resolved: every route waits on its gateway, which slicing must not change.
    k = Kernel()
    for net in nets(30):
        k.route(net, via(GW2, P2))
    sw = Switch(pass_routes=7)
    s = sw.sync(k)
    assert sw.passes[:-1] == [7] * (len(sw.passes) - 1) and sum(sw.passes) >= 30
    assert forwarding(s) == forwarding(Switch().sync(k))


@pytest.mark.parametrize("seed", range(40))
def test_passes_leave_what_the_mirror_holds_however_changes_and_passes_interleave(seed):
    """Random route events into a real mirror, its changes into the backlog, passes taken at
    random points; each pass applied as FibState.sync reads it (a prefix in both lists is back).
    After the last pass the planned table is the mirror's."""
    rng = random.Random(seed)
    mirror, backlog = KernelMirror(), Backlog(limit=rng.choice([3, 8, 20]))
    planned: dict[int, tuple] = {}
    for _ in range(60):
        events, deletes = [], rng.choice([0, 0, 0.05, 0.35])  # loads without withdrawals, too
        for _ in range(rng.choice([1, 2, 5, 30])):
            pk, metric = rng.randrange(40), rng.choice([0, 0, 10])
            events.append((pk, (metric, None), rng.random() < deletes))
        mirror.apply_routes(events)
        taken = mirror.take_changes()
        backlog.add(taken.routes, taken.gone, taken.withdrawn)
        for _ in range(rng.choice([0, 0, 1, 3])):
            _apply(planned, backlog.take())
            if not len(backlog):  # every change the mirror has made is planned
                assert planned == mirror.routes
    while len(backlog):
        _apply(planned, backlog.take())
    assert planned == mirror.routes


def _apply(planned: dict, part: tuple) -> None:
    changed, gone = part
    changed = dict(changed)
    assert not changed.keys() & set(gone)  # a prefix back since is not gone
    for pk in gone:
        planned.pop(pk, None)
    planned.update(changed)
