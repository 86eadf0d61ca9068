"""The kernel mirror, and the netlink watcher's datagrams into it: order, latest value wins, runs of
routes, dumps, and the reconciler's changes (split from test_routing_parse, whose builders it uses)."""

from __future__ import annotations

import ipaddress
import struct

from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.ndmsg import ndmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from taprouter.mac import mac_to_int
from taprouter import prefix
from taprouter.routing import netlink, parse, rtdecode, rtnl
from taprouter.routing.mirror import KernelMirror
from taprouter.routing.model import (NUD_FAILED, NUD_PERMANENT, NUD_REACHABLE, NUD_STALE, Address, KernelState,
                                     Link, Neighbour, NeighbourKey, NextHop, Route, RouteKey, RouteKind)
from test_routing_parse import (AF_BRIDGE, AF_INET, RT_TABLE_LOCAL, RTN_BLACKHOLE, RTN_LOCAL, _raw, ad, addr_bytes,
                                ip, link_bytes, lk, nd, neigh_bytes, net, nh, route_bytes, rt, unaligned)

def typed_routes(mirror: KernelMirror) -> dict[RouteKey, Route]:
    """Every route of the mirror as a typed Route, as parse.route gives them."""
    result = {}
    for pk, entry in mirror.items():
        dst = prefix.to_network(pk)
        for i in range(0, len(entry), 2):
            metric, hops = entry[i], entry[i + 1]
            route = Route(dst, metric, RouteKind.OTHER, ()) if hops is None else Route(dst, metric, RouteKind.UNICAST, hops)
            result[route.key] = route
    return result


# --- netlink datagrams ---------------------------------------------------------------------------


def test_decode_splits_a_datagram_into_the_messages_the_mirror_keeps():
    parts = [link_bytes(3, "tap1"), addr_bytes(3, "10.0.1.1", 24),
             route_bytes("10.9.0.0", 16, gateway="10.0.1.2", oif=3),
             neigh_bytes(3, "10.0.1.2", "02:00:00:00:01:02", NUD_REACHABLE),
             neigh_bytes(3, "10.0.1.2", None, NUD_FAILED, kind=29),
             route_bytes("2001:db8::", 32, kind=25, gateway="fe80::1", oif=3)]
    # NLMSG_DONE and an RTM_NEWRULE in between: skipped.
    done = struct.pack("=IHHII", 20, 3, 2, 0, 0) + b"\0\0\0\0"
    rule = _raw(rtmsg(), 32, {"family": AF_INET}, [])
    data = b"".join(parts[:2]) + done + b"".join(parts[2:4]) + rule + b"".join(parts[4:])
    msgs = list(netlink.decode(data))
    assert [m["header"]["type"] for m in msgs] == [16, 20, 24, 28, 29, 25]
    assert [type(m) for m in msgs] == [ifinfmsg, ifaddrmsg, rtmsg, ndmsg, ndmsg, rtmsg]
    assert parse.link(msgs[0]) == Link(3, "tap1", True, True)
    assert parse.route(msgs[2]).nexthops == (NextHop(3, ip("10.0.1.2")),)
    assert parse.neighbour(msgs[4]).state == NUD_FAILED
    assert parse.route(msgs[5]).dst == net("2001:db8::/32")


class _Recording(KernelMirror):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list = []

    def apply_routes(self, events):
        self.calls.append(("routes", [(str(prefix.to_network(pk)), delete) for pk, _entry, delete in events]))
        return super().apply_routes(events)

    def apply(self, msg):
        self.calls.append(("message", msg["header"]["type"]))
        return super().apply(msg)


def test_the_watcher_applies_queued_datagrams_in_order_with_route_runs_between_other_messages():
    """A neighbour refreshed during a load lands among thousands of routes: the runs of routes on
    either side still go to the mirror as runs, and in order with it."""
    a = route_bytes("10.9.0.0", 16, gateway="10.0.1.2", oif=3)
    b = route_bytes("10.8.0.0", 16, gateway="10.0.1.2", oif=3)
    gone = route_bytes("10.9.0.0", 16, kind=25, gateway="10.0.1.2", oif=3)
    v6 = route_bytes("2001:db8::", 32, gateway="fe80::1", oif=3)
    neighbour = neigh_bytes(3, "10.0.1.2", "02:00:00:00:01:02", NUD_REACHABLE)
    rule = _raw(rtmsg(), 32, {"family": AF_INET}, [])  # a kind the mirror does not keep
    mirror = _Recording()
    watcher = netlink.Watcher("unused", mirror)
    watcher._apply(a + b + neighbour + gone + v6 + rule + unaligned(link_bytes(3, "tap1")) + b)
    assert mirror.calls == [("routes", [("10.9.0.0/16", False), ("10.8.0.0/16", False)]),
                            ("message", 28),
                            ("routes", [("10.9.0.0/16", True), ("2001:db8::/32", False)]),
                            ("message", 16),
                            ("routes", [("10.8.0.0/16", False)])]
    assert sorted(str(prefix.to_network(pk)) for pk in mirror.routes) == ["10.8.0.0/16", "2001:db8::/32"]
    assert list(mirror.snapshot().neighbours) == [NeighbourKey(3, ip("10.0.1.2"))]
    mirror.calls.clear()
    watcher._apply(neighbour)  # no route at all
    assert mirror.calls == [("message", 28)]


def test_decode_aligns_on_four_bytes_and_stops_at_garbage():
    parts = [unaligned(link_bytes(3, "t")), link_bytes(4, "tap22"), unaligned(link_bytes(5, "abc")),
             link_bytes(6, "x")]
    assert [m["index"] for m in netlink.decode(b"".join(parts))] == [3, 4, 5, 6]
    assert list(netlink.decode(b"")) == []
    assert [m["index"] for m in netlink.decode(parts[0] + b"\0" * 10)] == [3]  # a short tail
    assert [m["index"] for m in netlink.decode(parts[0] + struct.pack("=IH", 8, 16) + b"\0" * 20)] == [3]


# --- the mirror ----------------------------------------------------------------------------------


class Recorder:
    def __init__(self):
        self.calls = 0

    def __call__(self):
        self.calls += 1


def new_route(*a, **kw):
    return rt(*a, **kw)


def del_route(*a, **kw):
    return rt(*a, kind=25, **kw)


EMPTY = KernelState({}, {}, frozenset())


def test_new_then_del_leaves_the_mirror_empty():
    rec = Recorder()
    m = KernelMirror(rec)
    events = [
        (lk(3, "tap1"), lk(3, "tap1", kind=17)),
        (ad(3, "10.0.1.1", 24), ad(3, "10.0.1.1", 24, kind=21)),
        (ad(3, "2001:db8:1::1", 64), ad(3, "2001:db8:1::1", 64, kind=21)),
        (new_route("10.9.0.0", 16, gateway="10.0.1.2", oif=3), del_route("10.9.0.0", 16, gateway="10.0.1.2", oif=3)),
        (new_route("2001:db8::", 32, multipath=[nh(3, "fe80::1"), nh(4, "fe80::2")], priority=1024),
         del_route("2001:db8::", 32, multipath=[nh(3, "fe80::1"), nh(4, "fe80::2")], priority=1024)),
        (new_route("10.66.0.0", 16, rtype=RTN_BLACKHOLE), del_route("10.66.0.0", 16, rtype=RTN_BLACKHOLE)),
        (nd(3, "10.0.1.2", "02:00:00:00:01:02", NUD_REACHABLE), nd(3, "10.0.1.2", None, 0, kind=29)),
        (nd(3, "fe80::1", "02:00:00:00:01:02", NUD_STALE), nd(3, "fe80::1", "02:00:00:00:01:02", NUD_STALE, kind=29)),
    ]
    for new, _ in events:
        assert m.apply(new) is True
    s = m.snapshot()
    assert len(s.links) == 1 and len(s.addresses) == 2 and len(typed_routes(m)) == 3 and len(s.neighbours) == 2
    assert rec.calls == len(events)
    for _, gone in events:
        assert m.apply(gone) is True
    assert m.snapshot() == EMPTY and m.routes == {}
    assert rec.calls == 2 * len(events)


def test_latest_value_wins():
    m = KernelMirror()
    m.apply(new_route("10.9.0.0", 16, gateway="10.0.1.2", oif=3))
    m.apply(new_route("10.9.0.0", 16, gateway="10.0.2.2", oif=4))
    m.apply(nd(3, "10.0.1.2", "02:00:00:00:01:02", NUD_REACHABLE))
    m.apply(nd(3, "10.0.1.2", "02:00:00:00:aa:aa", NUD_STALE))
    m.apply(lk(3, "tap1"))
    m.apply(lk(3, "tap1", carrier=0))
    s = m.snapshot()
    assert list(typed_routes(m).values()) == [Route(net("10.9.0.0/16"), 0, RouteKind.UNICAST, (NextHop(4, ip("10.0.2.2")),))]
    assert list(s.neighbours.values()) == [Neighbour(3, ip("10.0.1.2"), mac_to_int("02:00:00:00:aa:aa"), NUD_STALE)]
    assert s.links == {3: Link(3, "tap1", True, False)}
    # A blackhole replacing a unicast route with the same key.
    m.apply(new_route("10.9.0.0", 16, rtype=RTN_BLACKHOLE))
    assert typed_routes(m)[RouteKey(net("10.9.0.0/16"), 0)].kind is RouteKind.OTHER


def test_routes_are_keyed_by_destination_and_metric():
    m = KernelMirror()
    m.apply(new_route("10.9.0.0", 16, gateway="10.0.1.2", oif=3, priority=10))
    m.apply(new_route("10.9.0.0", 16, gateway="10.0.2.2", oif=4, priority=20))
    assert len(typed_routes(m)) == 2
    m.apply(del_route("10.9.0.0", 16, gateway="10.0.1.2", oif=3, priority=20))
    assert set(typed_routes(m)) == {RouteKey(net("10.9.0.0/16"), 10)}


def test_on_change_only_on_change():
    rec = Recorder()
    m = KernelMirror(rec)
    msg = new_route("10.9.0.0", 16, gateway="10.0.1.2", oif=3)
    assert m.apply(msg) is True and rec.calls == 1
    assert m.apply(msg) is False and rec.calls == 1  # the same again
    assert m.apply(rt("10.9.0.0", 16, gateway="10.0.1.2", oif=3)) is False  # equal, another object
    # Deleting what is not there, and messages the mirror filters out.
    assert m.apply(del_route("10.8.0.0", 16, gateway="10.0.1.2", oif=3)) is False
    assert m.apply(nd(3, "10.0.1.9", None, 0, kind=29)) is False
    assert m.apply(lk(9, "ghost", kind=17)) is False
    assert m.apply(ad(3, "10.0.1.1", 24, kind=21)) is False
    assert m.apply(new_route("10.0.1.1", oif=3, table=RT_TABLE_LOCAL, rtype=RTN_LOCAL)) is False
    assert m.apply(new_route("fe80::", 64, oif=3)) is False
    assert m.apply(nd(3, None, "02:00:00:00:01:02", NUD_PERMANENT, family=AF_BRIDGE)) is False
    assert m.apply(ad(3, "10.0.1.1", 24)) is True and m.apply(ad(3, "10.0.1.1", 24)) is False
    assert rec.calls == 2


def test_snapshot_is_not_touched_by_later_events():
    m = KernelMirror()
    m.apply(new_route("10.9.0.0", 16, gateway="10.0.1.2", oif=3))
    m.apply(ad(3, "10.0.1.1", 24))
    before = m.snapshot()
    m.apply(new_route("10.8.0.0", 16, gateway="10.0.1.2", oif=3))
    m.apply(ad(3, "10.0.1.1", 24, kind=21))
    m.apply(lk(3, "tap1"))
    assert len(before.addresses) == 1 and before.links == {}


def test_replace_installs_a_dump_and_drops_stale_entries():
    rec = Recorder()
    m = KernelMirror(rec)
    m.apply(lk(3, "tap1"))
    m.apply(lk(9, "gone"))
    m.apply(new_route("10.9.0.0", 16, gateway="10.0.1.2", oif=3))
    m.apply(new_route("10.8.0.0", 16, gateway="10.0.1.2", oif=3))
    m.apply(nd(3, "10.0.1.2", "02:00:00:00:01:02", NUD_REACHABLE))
    m.apply(nd(3, "10.0.1.3", "02:00:00:00:01:03", NUD_REACHABLE))
    m.apply(ad(3, "10.0.1.1", 24))
    m.apply(ad(9, "10.0.9.1", 24))
    calls = rec.calls
    # Routes come decoded by the narrow decoder, which has already dropped what the FIB must not carry.
    m.replace(links=[lk(3, "tap1", carrier=0)],
              routes=[pair(route_bytes("10.9.0.0", 16, gateway="10.0.2.2", oif=4)),
                      pair(route_bytes("2001:db8::", 32, gateway="fe80::1", oif=3, priority=1024))],
              neighbours=[nd(3, "10.0.1.2", "02:00:00:00:aa:aa", NUD_STALE),
                          nd(3, None, "02:00:00:00:01:02", NUD_PERMANENT, family=AF_BRIDGE)],  # filtered
              addresses=[ad(3, "10.0.1.1", 24), ad(3, "2001:db8:1::1", 64)])
    s = m.snapshot()
    assert s.links == {3: Link(3, "tap1", True, False)}
    assert typed_routes(m) == {
        RouteKey(net("10.9.0.0/16"), 0): Route(net("10.9.0.0/16"), 0, RouteKind.UNICAST, (NextHop(4, ip("10.0.2.2")),)),
        RouteKey(net("2001:db8::/32"), 1024): Route(net("2001:db8::/32"), 1024, RouteKind.UNICAST,
                                                    (NextHop(3, ip("fe80::1")),)),
    }
    assert list(s.neighbours.values()) == [Neighbour(3, ip("10.0.1.2"), mac_to_int("02:00:00:00:aa:aa"), NUD_STALE)]
    assert s.addresses == {Address(3, ipaddress.ip_interface("10.0.1.1/24")),
                           Address(3, ipaddress.ip_interface("2001:db8:1::1/64"))}
    assert rec.calls == calls + 1
    # Events keep applying on top of the dump.
    assert m.apply(del_route("10.9.0.0", 16, gateway="10.0.2.2", oif=4)) is True
    m.replace([], [], [], [])
    assert m.snapshot() == EMPTY and m.routes == {}
    assert rec.calls == calls + 3


def pair(message: bytes) -> tuple:
    """A route as netlink.dump_routes gives it: (prefix, (metric, hops))."""
    pk, metric, hops = rtdecode.decode(message)
    return pk, (metric, hops)


def test_events_straight_from_a_datagram():
    m = KernelMirror()
    data = b"".join([link_bytes(3, "tap1"), route_bytes("10.9.0.0", 16, gateway="10.0.1.2", oif=3),
                     neigh_bytes(3, "10.0.1.2", "02:00:00:00:01:02", NUD_REACHABLE),
                     route_bytes("10.9.0.0", 16, kind=25, gateway="10.0.1.2", oif=3),
                     route_bytes("10.8.0.0", 16, multipath=[nh(3, "10.0.1.2"), nh(4, "10.0.2.2", hops=1)])])
    assert [m.apply(msg) for msg in netlink.decode(data)] == [True, True, True, True, True]
    routes = typed_routes(m)
    assert set(routes) == {RouteKey(net("10.8.0.0/16"), 0)}
    assert routes[RouteKey(net("10.8.0.0/16"), 0)].nexthops == (NextHop(3, ip("10.0.1.2"), 1),
                                                                   NextHop(4, ip("10.0.2.2"), 2))


def test_mirror_message_types_match_the_kernel():
    # linux/rtnetlink.h
    assert (rtnl.RTM_NEWLINK, rtnl.RTM_DELLINK, rtnl.RTM_NEWADDR, rtnl.RTM_DELADDR,
            rtnl.RTM_NEWROUTE, rtnl.RTM_DELROUTE, rtnl.RTM_NEWNEIGH,
            rtnl.RTM_DELNEIGH) == (16, 17, 20, 21, 24, 25, 28, 29)
    assert set(netlink.MESSAGE_CLASSES) == {16, 17, 20, 21, 24, 25, 28, 29}


def test_apply_routes_keeps_the_same_rules_as_apply():
    rec = Recorder()
    m = KernelMirror(rec)
    pk, metric, hops = rtdecode.decode(route_bytes("10.9.0.0", 16, gateway="10.0.1.2", oif=3))
    assert m.apply_routes([(pk, (metric, hops), False)]) == 1
    assert m.apply_routes([(pk, (metric, hops), False)]) == 0
    # The same route through pyroute2 is no change either: both paths build equal entries.
    assert m.apply(new_route("10.9.0.0", 16, gateway="10.0.1.2", oif=3)) is False
    newer = rtdecode.decode(route_bytes("10.9.0.0", 16, gateway="10.0.2.2", oif=4))
    assert m.apply_routes([(newer[0], newer[1:], False)]) == 1
    assert typed_routes(m) == {RouteKey(net("10.9.0.0/16"), 0): Route(net("10.9.0.0/16"), 0, RouteKind.UNICAST,
                                                                       (NextHop(4, ip("10.0.2.2")),))}
    # A delete carries the route as the kernel had it; the prefix and metric are what count.
    assert m.apply_routes([(pk, (metric, hops), True)]) == 1
    assert m.apply_routes([(pk, (metric, hops), True)]) == 0
    assert m.snapshot() == EMPTY and m.routes == {} and rec.calls == 3


def test_changes_name_each_changed_prefix_once_and_a_dump_asks_for_everything():
    m = KernelMirror()
    assert m.take_changes() == ({}, False, True, False, [])  # a new mirror: everything
    a = rtdecode.decode(route_bytes("10.9.0.0", 16, gateway="10.0.1.2", oif=3))
    b = rtdecode.decode(route_bytes("10.9.0.0", 16, gateway="10.0.1.2", oif=3, priority=20))
    c = rtdecode.decode(route_bytes("10.8.0.0", 16, gateway="10.0.1.2", oif=3))
    m.apply_routes([(a[0], a[1:], False), (b[0], b[1:], False), (c[0], c[1:], False), (c[0], c[1:], True)])
    # Each changed prefix with a route, with its entry as of its last change; those left without one.
    assert m.take_changes() == ({a[0]: (0, a[2], 20, b[2])}, False, False, True, [c[0]])
    assert m.routes == {a[0]: (0, a[2], 20, b[2])}  # both metrics, best first
    m.apply_routes([(a[0], a[1:], True)])
    assert m.routes == {a[0]: (20, b[2])}
    m.apply(nd(3, "10.0.1.2", "02:00:00:00:01:02", NUD_REACHABLE))
    assert m.take_changes() == ({a[0]: (20, b[2])}, True, False, True, [])  # a metric withdrawn
    assert m.take_changes() == ({}, False, False, False, [])
    m.apply_routes([(c[0], c[1:], True)])  # not there: nothing withdrawn
    assert m.take_changes() == ({}, False, False, False, [])
    # Gone and back in one window: changed, and gone as well (FibState.sync: back wins). Back and
    # gone again: gone only, as often as it went.
    m.apply_routes([(c[0], c[1:], False), (a[0], (20, b[2]), True), (a[0], (20, b[2]), False)])
    m.apply_routes([(c[0], c[1:], True), (c[0], c[1:], False), (c[0], c[1:], True)])
    assert m.take_changes() == ({a[0]: (20, b[2])}, False, False, True, [a[0], c[0], c[0]])
    m.apply_routes([(c[0], c[1:], False)])
    m.replace([], [(c[0], c[1:])], [], [])
    assert m.take_changes() == ({}, True, True, False, []) and m.routes == {c[0]: (c[1], c[2])}
    # A dump with one prefix at two metrics keeps both, best first.
    m.replace([], [(b[0], b[1:]), (a[0], a[1:])], [], [])
    assert m.routes == {a[0]: (0, a[2], 20, b[2])}


class _TakenWhileWaiting:
    """The mirror's lock, with the reconciler's take_changes() slipping in once while the
    watcher waits for it: the interleaving that lost changes when apply_routes looked up the
    dirty set before taking the lock."""

    def __init__(self, mirror: KernelMirror) -> None:
        self.mirror, self.real, self.taken = mirror, mirror._lock, []
        self.armed = False

    def __enter__(self):
        if self.armed:
            self.armed = False
            self.taken.append(self.mirror.take_changes())
        return self.real.__enter__()

    def __exit__(self, *exc):
        return self.real.__exit__(*exc)


def test_a_change_made_while_the_reconciler_takes_changes_is_not_lost():
    m = KernelMirror()
    m.take_changes()
    lock = m._lock = _TakenWhileWaiting(m)
    a = rtdecode.decode(route_bytes("10.9.0.0", 16, gateway="10.0.1.2", oif=3))
    lock.armed = True
    m.apply_routes([(a[0], a[1:], False)])
    assert lock.taken == [({}, False, False, False, [])]  # the reconciler came first and found nothing
    assert m.take_changes() == ({a[0]: a[1:]}, False, False, False, [])  # so the change is there for its next pass


