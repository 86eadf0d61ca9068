"""rtshape: datagrams decoded from their learnt layout agree with the generic walk, message for message,
and anything that does not fit the layout falls back to it."""

from __future__ import annotations

import ipaddress
import random

import pytest

from taprouter.routing import rtdecode, rtnl, rtshape
from test_routing_parse import RT_TABLE_LOCAL, nh, route_bytes

RTN_BLACKHOLE = 6


def generic(data: bytes) -> list[tuple]:
    """The reference: rtdecode.decode on each message (itself checked against pyroute2)."""
    events = []
    for kind, offset in rtdecode.split(data):
        route = rtdecode.decode(data, offset)
        if route is not None:
            events.append((route[0], route[1:], kind == rtnl.RTM_DELROUTE))
    return events


def uniform(rng: random.Random, family: int, count: int, **shape) -> bytes:
    """count messages of one layout: random prefixes, gateways, metrics, kinds and flags."""
    messages = []
    for _ in range(count):
        bits = 32 if family == 4 else 128
        length = rng.choice([0, 1, 8, 24, bits - 1, bits, rng.randrange(bits + 1)])
        value = rng.getrandbits(bits) >> (bits - length) << (bits - length) if length else 0
        # Multicast and link-local destinations must be dropped by both paths.
        if rng.random() < 0.1:
            value = (0xE0 << 24 if family == 4 else 0xFF << 120) | (value & 0xFFFF)
            length = max(length, 8 if family == 6 else 4)
        elif rng.random() < 0.1:
            value = (0xA9FE << 16 if family == 4 else 0xFE80 << 112) | (value & 0xFFFF)
            length = max(length, 16)
        dst = str(ipaddress.ip_address(value) if family == 4 else ipaddress.IPv6Address(value))
        gateway = f"10.0.{rng.randrange(4)}.{rng.randrange(1, 9)}" if family == 4 else f"fe80::{rng.randrange(1, 9)}"
        attrs = dict(shape)
        if "gateway" in attrs:
            attrs["gateway"] = gateway
        if "oif" in attrs:
            attrs["oif"] = rng.randrange(1, 5)
        if "priority" in attrs:
            attrs["priority"] = rng.choice([0, 20, 1024, 0xFFFFFFFF])
        table = rng.choice([254, 254, 254, 100])
        messages.append(route_bytes(dst, length if value or length else None, kind=rng.choice([24, 24, 25]),
                                    table=table, flags=rng.choice([0, 0, 16]), **attrs))
    # A layout needs every message's length to match, so give every one a destination.
    return b"".join(messages)


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("family", [4, 6])
def test_uniform_datagrams_agree_with_the_generic_walk(seed, family):
    rng = random.Random(seed * 7 + family)
    shape = rng.choice([dict(gateway=1, oif=1), dict(gateway=1, oif=1, priority=1), dict(oif=1),
                        dict(priority=1, gateway=1, oif=1, prefsrc="10.0.0.1" if family == 4 else "2001:db8::1")])
    data = uniform(rng, family, rng.randrange(1, 300), **shape)
    assert rtshape.route_events(data) == generic(data)


def test_the_fast_path_is_taken_for_a_uniform_datagram():
    data = b"".join(route_bytes(f"20.0.{i}.0", 24, gateway="10.0.1.2", oif=3) for i in range(200))
    decoder = rtshape._decoder(data)
    assert decoder is not None and decoder(data) == generic(data)
    assert len(decoder(data)) == 200


def test_one_odd_message_sends_the_datagram_to_the_generic_walk():
    base = [route_bytes(f"20.0.{i}.0", 24, gateway="10.0.1.2", oif=3) for i in range(50)]
    odd_ones = [
        route_bytes("20.1.0.0", 24, gateway="10.0.1.2", oif=3, rtype=RTN_BLACKHOLE),  # same length, other type
        route_bytes("20.1.0.0", 24, oif=3, priority=7),  # same length, other attributes
        route_bytes("20.1.0.0", 24, gateway="10.0.1.2", oif=3, table=RT_TABLE_LOCAL),
        route_bytes("20.1.0.0", 24, multipath=[nh(3, "10.0.1.2"), nh(4, "10.0.2.2")]),
        route_bytes("2001:db8::", 32, gateway="fe80::1", oif=3),
        route_bytes("20.1.0.0", 24, gateway="10.0.1.2", oif=3, kind=24, flags=16),
    ]
    for odd in odd_ones:
        for where in (0, 25, 50):
            messages = list(base)
            messages.insert(where, odd)
            data = b"".join(messages)
            assert rtshape.route_events(data) == generic(data)


def test_other_message_kinds_return_none():
    from test_routing_parse import link_bytes
    data = route_bytes("20.0.0.0", 24, gateway="10.0.1.2", oif=3) + link_bytes(3, "tap1")
    assert rtshape.route_events(data) is None
    data = link_bytes(3, "tap1") * 3
    assert rtshape.route_events(data) is None


def test_truncated_and_empty_datagrams():
    whole = route_bytes("20.0.0.0", 24, gateway="10.0.1.2", oif=3)
    assert rtshape.route_events(b"") == []
    assert rtshape.route_events(whole[:20]) == generic(whole[:20]) == []


@pytest.mark.parametrize("seed", range(10))
def test_mixed_runs_agree_with_the_generic_walk(seed):
    # What the watcher hands over: datagrams read back to back, IPv4 and IPv6 runs interleaved.
    rng = random.Random(100 + seed)
    parts = []
    for _ in range(rng.randrange(1, 8)):
        family = rng.choice([4, 6])
        shape = rng.choice([dict(gateway=1, oif=1), dict(gateway=1, oif=1, priority=1), dict(oif=1)])
        parts.append(uniform(rng, family, rng.randrange(1, 40), **shape))
    if rng.random() < 0.5:
        parts.insert(rng.randrange(len(parts) + 1),
                     route_bytes("20.1.0.0", 24, multipath=[nh(3, "10.0.1.2"), nh(4, "10.0.2.2")]))
    data = b"".join(parts)
    assert rtshape.route_events(data) == generic(data)
