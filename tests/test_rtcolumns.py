"""rtcolumns: runs of one layout decoded a column at a time agree with the generic walk (itself checked
against pyroute2), and any run the columns do not cover is left to the row decoder."""

from __future__ import annotations

import ipaddress
import random

import pytest

from taprouter.routing import rtcolumns, rtshape
from test_routing_parse import AF_INET, AF_INET6, RT_TABLE_LOCAL, route_bytes
from test_rtshape import RTN_BLACKHOLE, generic


def columns(data: bytes):
    """The column decoder for the run's shape, applied to it (None: the run needs rows)."""
    first_length = int.from_bytes(data[:4], "little")
    layout = rtshape._layout(data, 0, first_length)
    assert layout is not None
    plan = rtcolumns.plan(data[16], first_length, layout)
    return None if plan is None else plan(data)


def run(rng: random.Random, family: int, count: int, *, kinds=(24, 25), gateways=4, oifs=3,
        metric: bool = False, metrics=(0, 20, 1024, 0xFFFFFFFF), table_attr=True) -> bytes:
    """count messages of one layout, none of which the columns must refuse."""
    bits = 32 if family == 4 else 128
    messages = []
    for _ in range(count):
        length = rng.choice([1, 8, 16, 24, bits - 1, bits, rng.randrange(1, bits + 1)])
        while True:
            value = rng.getrandbits(bits) >> (bits - length) << (bits - length)
            first = value >> (bits - 8)
            if first not in ((0xFE, 0xFF) if family == 6 else (*range(0xE0, 0xF0), 0xA9)):
                break
        dst = str(ipaddress.ip_address(value) if family == 4 else ipaddress.IPv6Address(value))
        attrs = {"oif": rng.randrange(1, oifs + 1)}
        if gateways:
            n = rng.randrange(1, gateways + 1)
            attrs["gateway"] = f"10.0.{n}.2" if family == 4 else f"fe80::{n}"
        if metric:
            attrs["priority"] = rng.choice(metrics)
        messages.append(route_bytes(dst, length, kind=rng.choice(kinds), table_attr=table_attr, **attrs))
    return b"".join(messages)


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("family", [4, 6])
def test_runs_decode_by_columns_as_the_generic_walk_does(seed, family):
    rng = random.Random(seed * 31 + family)
    options = rng.choice([
        {},                                               # mixed kinds, gateways, interfaces
        {"kinds": (24,), "gateways": 1, "oifs": 1},       # a bulk load: everything alike
        {"kinds": (25,), "gateways": 1, "oifs": 1},       # a bulk withdrawal
        {"metric": True},
        {"metric": True, "metrics": (20,)},
        {"gateways": 0},                                  # connected routes: no gateway
        {"table_attr": False},                            # the table in rtmsg only
    ])
    data = run(rng, family, rng.randrange(1, 400), **options)
    decoded = columns(data)
    assert decoded is not None, "the columns refused a run they cover"
    assert decoded == generic(data)
    assert rtshape.route_events(data) == decoded


def test_routes_with_the_same_metric_and_next_hops_share_one_entry():
    data = run(random.Random(5), 4, 300, gateways=2, oifs=1, metric=True, metrics=(0, 20))
    entries = {id(entry) for _pk, entry, _delete in columns(data)}
    assert len(entries) == 4  # two gateways times two metrics
    again = {id(entry) for _pk, entry, _delete in rtshape.route_events(data)}
    assert again == entries  # interned across runs, not only within one


REFUSED = {
    "another table (attribute)": dict(table_attr=100),
    "another table (rtmsg only)": dict(table=RT_TABLE_LOCAL, table_attr=False),
    "a linkdown route": dict(flags=16),
    "a blackhole": dict(rtype=RTN_BLACKHOLE),
}


@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.parametrize("odd", sorted(REFUSED))
@pytest.mark.parametrize("where", [0, 77, 149])
def test_a_run_with_one_message_the_columns_do_not_cover_goes_by_rows(family, odd, where):
    rng = random.Random(where)
    table_attr = REFUSED[odd].get("table_attr", True)
    base = run(rng, family, 150, metric=True, table_attr=bool(table_attr))
    size = len(base) // 150
    dst = "20.1.0.0" if family == 4 else "2001:db8:1::"
    gateway = "10.0.1.2" if family == 4 else "fe80::1"
    message = route_bytes(dst, 24 if family == 4 else 48, oif=3, gateway=gateway, priority=7,
                          **{"table_attr": True, **REFUSED[odd]})
    assert len(message) == size  # same layout: only the columns' checks can tell
    data = base[:where * size] + message + base[(where + 1) * size:]
    assert columns(data) is None
    assert rtshape.route_events(data) == generic(data)


@pytest.mark.parametrize("dst,plen", [("224.0.0.0", 4), ("239.1.2.0", 24), ("169.254.0.0", 16),
                                      ("169.200.0.0", 16), ("ff02::", 16), ("fe80::", 64), ("fec0::", 10)])
def test_a_destination_that_may_be_multicast_or_link_local_sends_the_run_to_rows(dst, plen):
    family = 6 if ":" in dst else 4
    base = run(random.Random(1), family, 50, gateways=1, oifs=1)
    gateway = "10.0.1.2" if family == 4 else "fe80::1"
    data = base + route_bytes(dst, plen, oif=1, gateway=gateway)
    assert columns(data) is None
    # 169.200/16 and fec0::/10 are neither: the rows keep them, the exact rule applies there.
    assert rtshape.route_events(data) == generic(data)


def test_shapes_the_columns_do_not_plan_for():
    v4 = bytes(route_bytes("20.0.0.0", 24, oif=3, gateway="10.0.1.2"))
    layout = rtshape._layout(v4, 0, len(v4))
    assert rtcolumns.plan(AF_INET, len(v4), layout) is not None
    # An attribute twice, or a destination of the wrong size: the rows have the rules for those.
    assert rtcolumns.plan(AF_INET, len(v4) + 8, layout + ((8, 4),)) is None
    assert rtcolumns.plan(AF_INET6, len(v4), layout) is None  # 4-byte addresses in an IPv6 shape
    assert rtcolumns.plan(AF_INET, len(v4) + 2, layout) is None  # not a whole number of words


def test_a_run_that_is_not_a_whole_number_of_messages_is_refused():
    data = run(random.Random(2), 4, 10)
    assert columns(data[:-4]) is None
    assert columns(data + data[:8]) is None
