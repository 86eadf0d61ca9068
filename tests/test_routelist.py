"""routelist: kernel routes inside a prefix, a page at a time, in (family, length, address) order,
checked against a plain sort of the same prefixes; pages chain by cursor and skip what left the mirror."""

from __future__ import annotations

import ipaddress
import random

from taprouter import prefix as pfx
from taprouter.controller import routelist


def pk(text: str) -> int:
    return pfx.from_network(ipaddress.ip_network(text))


def expected(keys, within: str) -> list[int]:
    net = ipaddress.ip_network(within)
    inside = [k for k in keys if pfx.to_network(k).version == net.version and pfx.to_network(k).subnet_of(net)]
    return sorted(inside)


def walk(index, routes, within: list[str], limit: int) -> list[int]:
    seen, after = [], None
    while True:
        rows, after = routelist.page(index, routes, [pk(w) for w in within], after, limit)
        assert len(rows) <= limit
        seen += [p for p, _ in rows]
        if after is None:
            return seen


def sample() -> dict[int, tuple]:
    rng = random.Random(7)
    keys = {pk("0.0.0.0/0"), pk("10.0.0.0/8"), pk("10.1.0.0/16"), pk("10.1.2.0/24"), pk("10.1.2.3/32"),
            pk("11.0.0.0/8"), pk("::/0"), pk("2001:db8::/32"), pk("2001:db8:1::/48"), pk("2001:db8:1::5/128")}
    keys |= {pfx.pack(4, rng.getrandbits(32), rng.choice((16, 20, 24, 32))) for _ in range(3000)}
    keys |= {pfx.pack(6, (0x20010DB8 << 96) | rng.getrandbits(96), rng.choice((40, 48, 64, 128)))
             for _ in range(2000)}
    return {k: (0, None) for k in keys}


def test_every_page_chain_lists_exactly_the_prefixes_inside_in_order():
    routes = sample()
    index = routelist.RouteIndex.build(routes)
    assert len(index) == len(routes)
    for within in ("0.0.0.0/0", "10.0.0.0/8", "10.1.0.0/16", "128.0.0.0/1", "10.1.2.3/32", "192.0.2.0/24",
                   "::/0", "2001:db8::/32", "2001:db8:1::/48"):
        for limit in (1, 7, 50, 100000):
            assert walk(index, routes, [within], limit) == expected(routes, within), (within, limit)
    both = walk(index, routes, ["0.0.0.0/0", "::/0"], 33)
    assert both == sorted(routes)


def test_a_page_skips_prefixes_gone_from_the_mirror_and_resumes_after_the_cursor():
    routes = {pk(t): (0, None) for t in ("10.0.0.0/8", "10.1.0.0/16", "10.2.0.0/16", "10.3.0.0/16")}
    index = routelist.RouteIndex.build(routes)
    del routes[pk("10.2.0.0/16")]
    rows, after = routelist.page(index, routes, [pk("10.0.0.0/8")], None, 2)
    assert [pfx.to_network(p).compressed for p, _ in rows] == ["10.0.0.0/8", "10.1.0.0/16"]
    assert after == pk("10.1.0.0/16")
    rows, after = routelist.page(index, routes, [pk("10.0.0.0/8")], after, 2)
    assert [pfx.to_network(p).compressed for p, _ in rows] == ["10.3.0.0/16"] and after is None
    assert routelist.parse_cursor("10.1.0.0/16") == pk("10.1.0.0/16") and routelist.parse_cursor("") is None


def test_an_index_far_behind_its_table_says_so():
    index = routelist.RouteIndex.build(sample())
    assert len(index) == index.count == len(sample())
    assert not index.far_behind(index.count + 10) and not index.far_behind(index.count - 999)
    assert index.far_behind(index.count * 2) and index.far_behind(0)
