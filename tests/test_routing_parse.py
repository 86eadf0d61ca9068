"""rtnetlink messages -> typed kernel state, and the mirror that keeps it.

Every message is built with pyroute2, encoded to bytes and decoded again by a fresh message object,
so the parser sees exactly what it would get from the kernel's socket.
"""

from __future__ import annotations

import ipaddress
import struct

import pytest
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.ndmsg import ndmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from taprouter.mac import mac_to_int
from taprouter import prefix
from taprouter.routing import parse, rtdecode, rtnl
from taprouter.routing.model import (NUD_DELAY, NUD_FAILED, NUD_INCOMPLETE, NUD_NOARP, NUD_PERMANENT, NUD_PROBE,
                                     NUD_REACHABLE, NUD_STALE, Address, Link, Neighbour, NextHop, Route, RouteKey,
                                     RouteKind)

AF_INET, AF_INET6, AF_BRIDGE, AF_MPLS = 2, 10, 7, 28
RTN_UNICAST, RTN_LOCAL, RTN_BROADCAST, RTN_MULTICAST, RTN_BLACKHOLE, RTN_UNREACHABLE, RTN_PROHIBIT, RTN_THROW = \
    1, 2, 3, 5, 6, 7, 8, 9
RT_TABLE_MAIN, RT_TABLE_LOCAL, RT_TABLE_COMPAT = 254, 255, 252
RTNH_F_LINKDOWN = 16
RTA_NH_ID = 30
IFF_UP, IFF_RUNNING = 1, 0x40
ip = ipaddress.ip_address
net = ipaddress.ip_network


def decode_route(data: bytes, offset: int = 0) -> Route | None:
    """rtdecode.decode, as the typed Route that parse.route() builds from a pyroute2 message."""
    decoded = rtdecode.decode(data, offset)
    if decoded is None:
        return None
    pk, metric, hops = decoded
    if hops is None:
        return Route(prefix.to_network(pk), metric, RouteKind.OTHER, ())
    return Route(prefix.to_network(pk), metric, RouteKind.UNICAST, hops)


def _raw(msg, kind: int, fields: dict, attrs: list) -> bytes:
    for name, value in fields.items():
        msg[name] = value
    msg["header"]["type"] = kind
    msg["attrs"] = attrs
    msg.encode()
    return bytes(msg.data)


def _decoded(cls, data: bytes):
    msg = cls(data)
    msg.decode()
    return msg


def route_bytes(dst: str | None = None, dst_len: int | None = None, *, family: int | None = None,
                kind: int = 24, table: int = RT_TABLE_MAIN, rtype: int = RTN_UNICAST, flags: int = 0,
                table_attr: int | None | bool = True, extra: list | None = None, **attrs) -> bytes:
    """An RTM_NEWROUTE (kind=25: DELROUTE) as the kernel sends it; attrs by RTA_ name without prefix."""
    if family is None:
        family = AF_INET6 if dst and ":" in dst else AF_INET
    if dst_len is None:
        dst_len = 0 if dst is None else (32 if family == AF_INET else 128)
    nla = []
    if table_attr is True:
        nla.append(("RTA_TABLE", table))
    elif table_attr:
        nla.append(("RTA_TABLE", table_attr))
    if dst is not None:
        nla.append(("RTA_DST", dst))
    nla += [(f"RTA_{name.upper()}", value) for name, value in attrs.items()]
    nla += extra or []
    return _raw(rtmsg(), kind, {"family": family, "dst_len": dst_len, "table": table if table < 256 else
                                RT_TABLE_COMPAT, "type": rtype, "flags": flags, "proto": 4,
                                "scope": 0}, nla)


def rt(*args, **kw):
    return _decoded(rtmsg, route_bytes(*args, **kw))


def nh(oif: int, gateway: str | None = None, hops: int = 0, flags: int = 0) -> dict:
    return {"oif": oif, "hops": hops, "flags": flags, "attrs": [("RTA_GATEWAY", gateway)] if gateway else []}


def neigh_bytes(ifindex: int, dst: str | None, lladdr: str | None, state: int, *, family: int | None = None,
                kind: int = 28) -> bytes:
    if family is None:
        family = AF_INET6 if dst and ":" in dst else AF_INET
    attrs = []
    if dst is not None:
        attrs.append(("NDA_DST", dst))
    if lladdr is not None:
        attrs.append(("NDA_LLADDR", lladdr))
    return _raw(ndmsg(), kind, {"family": family, "ifindex": ifindex, "state": state, "flags": 0,
                                "ndm_type": 1}, attrs)


def nd(*args, **kw):
    return _decoded(ndmsg, neigh_bytes(*args, **kw))


def link_bytes(index: int, name: str, flags: int = IFF_UP | IFF_RUNNING, carrier: int | None = 1,
               kind: int = 16) -> bytes:
    attrs = [("IFLA_IFNAME", name)]
    if carrier is not None:
        attrs.append(("IFLA_CARRIER", carrier))
    return _raw(ifinfmsg(), kind, {"family": 0, "index": index, "flags": flags, "change": 0}, attrs)


def lk(*args, **kw):
    return _decoded(ifinfmsg, link_bytes(*args, **kw))


def addr_bytes(index: int, address: str | None, prefixlen: int, *, local: str | None = None,
               family: int | None = None, kind: int = 20) -> bytes:
    text = local or address or ""
    if family is None:
        family = AF_INET6 if ":" in text else AF_INET
    attrs = []
    if address is not None:
        attrs.append(("IFA_ADDRESS", address))
    if local is not None:
        attrs.append(("IFA_LOCAL", local))
    return _raw(ifaddrmsg(), kind, {"family": family, "prefixlen": prefixlen, "index": index, "flags": 0,
                                    "scope": 0}, attrs)


def ad(*args, **kw):
    return _decoded(ifaddrmsg, addr_bytes(*args, **kw))


def with_raw_attr(data: bytes, attr_type: int, value: int) -> bytes:
    """Append a u32 attribute pyroute2 may not know (such as RTA_NH_ID), fixing the length."""
    data = data + struct.pack("=HHI", 8, attr_type, value)
    return struct.pack("=I", len(data)) + data[4:]


# --- routes --------------------------------------------------------------------------------------


def test_ipv4_unicast_with_gateway():
    r = parse.route(rt("10.9.0.0", 16, gateway="10.0.1.2", oif=3, priority=20))
    assert r == Route(net("10.9.0.0/16"), 20, RouteKind.UNICAST, (NextHop(3, ip("10.0.1.2"), 1, False),))
    assert r.key == RouteKey(net("10.9.0.0/16"), 20)


def test_ipv6_unicast_with_link_local_gateway():
    r = parse.route(rt("2001:db8:99::", 48, gateway="fe80::1", oif=4, priority=1024))
    assert r == Route(net("2001:db8:99::/48"), 1024, RouteKind.UNICAST, (NextHop(4, ip("fe80::1")),))


def test_connected_route_has_no_gateway():
    assert parse.route(rt("10.0.1.0", 24, oif=3, prefsrc="10.0.1.1")) == \
        Route(net("10.0.1.0/24"), 0, RouteKind.UNICAST, (NextHop(3, None),))
    assert parse.route(rt("2001:db8:1::", 64, oif=3, priority=256)) == \
        Route(net("2001:db8:1::/64"), 256, RouteKind.UNICAST, (NextHop(3, None),))


def test_host_route():
    assert parse.route(rt("10.0.1.7", gateway="10.0.2.2", oif=4)).dst == net("10.0.1.7/32")
    assert parse.route(rt("2001:db8::7", gateway="fe80::2", oif=4)).dst == net("2001:db8::7/128")


@pytest.mark.parametrize("family", [AF_INET, AF_INET6])
def test_default_route_has_no_dst_attribute(family):
    gw = "10.0.1.2" if family == AF_INET else "fe80::1"
    r = parse.route(rt(None, 0, family=family, gateway=gw, oif=3))
    assert r.dst == net("0.0.0.0/0" if family == AF_INET else "::/0")
    assert r.nexthops == (NextHop(3, ip(gw)),) and r.kind is RouteKind.UNICAST


def test_metric_defaults_to_zero():
    assert parse.route(rt("10.9.0.0", 16, gateway="10.0.1.2", oif=3)).metric == 0


def test_dst_with_host_bits_is_normalised():
    # The kernel never sends these, but a lenient parse must still key them by their network.
    assert parse.route(rt("10.9.1.1", 16, gateway="10.0.1.2", oif=3)).dst == net("10.9.0.0/16")


def test_multipath_with_weights_and_linkdown():
    r = parse.route(rt("10.9.0.0", 16, multipath=[nh(4, "10.0.2.2", hops=2), nh(3, "10.0.1.2", hops=0),
                                                  nh(5, "10.0.3.2", hops=9, flags=RTNH_F_LINKDOWN)]))
    assert r.kind is RouteKind.UNICAST
    assert r.nexthops == (NextHop(3, ip("10.0.1.2"), 1, False), NextHop(4, ip("10.0.2.2"), 3, False),
                          NextHop(5, ip("10.0.3.2"), 10, True))


def test_ipv6_multipath():
    r = parse.route(rt("2001:db8:99::", 48, priority=1024,
                       multipath=[nh(4, "fe80::2"), nh(3, "fe80::1", hops=1)]))
    assert r.nexthops == (NextHop(3, ip("fe80::1"), 2), NextHop(4, ip("fe80::2"), 1))


def test_multipath_order_does_not_matter():
    a = parse.route(rt("10.9.0.0", 16, multipath=[nh(3, "10.0.1.2"), nh(4, "10.0.2.2")]))
    b = parse.route(rt("10.9.0.0", 16, multipath=[nh(4, "10.0.2.2"), nh(3, "10.0.1.2")]))
    assert a == b


def test_linkdown_flag_on_a_single_path_route():
    r = parse.route(rt("10.9.0.0", 16, gateway="10.0.1.2", oif=3, flags=RTNH_F_LINKDOWN))
    assert r.nexthops == (NextHop(3, ip("10.0.1.2"), 1, True),)
    assert parse.route(rt("10.9.0.0", 16, gateway="10.0.1.2", oif=3, flags=0x200)).nexthops[0].linkdown is False


@pytest.mark.parametrize("rtype", [RTN_BLACKHOLE, RTN_UNREACHABLE, RTN_PROHIBIT, RTN_THROW])
def test_non_unicast_routes_are_other(rtype):
    r = parse.route(rt("10.66.0.0", 16, rtype=rtype, priority=7))
    assert r == Route(net("10.66.0.0/16"), 7, RouteKind.OTHER, ())
    r6 = parse.route(rt("2001:db8:66::", 48, rtype=rtype, priority=1024))
    assert r6 == Route(net("2001:db8:66::/48"), 1024, RouteKind.OTHER, ())


@pytest.mark.parametrize("table,table_attr", [(RT_TABLE_LOCAL, True), (RT_TABLE_LOCAL, None), (100, True),
                                              (RT_TABLE_COMPAT, 1000), (RT_TABLE_MAIN, 1000)])
def test_other_tables_are_ignored(table, table_attr):
    assert parse.route(rt("10.9.0.0", 16, gateway="10.0.1.2", oif=3, table=table, table_attr=table_attr)) is None


def test_main_table_without_rta_table_is_read():
    assert parse.route(rt("10.9.0.0", 16, gateway="10.0.1.2", oif=3, table_attr=None)) is not None


@pytest.mark.parametrize("rtype", [RTN_LOCAL, RTN_BROADCAST])
def test_local_table_routes_of_the_router_itself_are_ignored(rtype):
    assert parse.route(rt("10.0.1.1", oif=3, table=RT_TABLE_LOCAL, rtype=rtype)) is None


@pytest.mark.parametrize("dst,dst_len", [("fe80::", 64), ("fe80::1:2", 128), ("febf::", 16),
                                         ("169.254.0.0", 16), ("169.254.7.7", 32)])
def test_link_local_destinations_are_ignored(dst, dst_len):
    assert parse.route(rt(dst, dst_len, oif=3)) is None


@pytest.mark.parametrize("dst,dst_len,rtype", [("ff00::", 8, RTN_UNICAST), ("ff02::1", 128, RTN_MULTICAST),
                                               ("224.0.0.0", 4, RTN_UNICAST), ("239.1.1.1", 32, RTN_MULTICAST)])
def test_multicast_destinations_are_ignored(dst, dst_len, rtype):
    assert parse.route(rt(dst, dst_len, oif=3, rtype=rtype)) is None


@pytest.mark.parametrize("dst,dst_len", [("fec0::", 10), ("2001:db8::", 32), ("169.0.0.0", 8),
                                         ("10.0.0.0", 8), ("223.255.255.0", 24)])
def test_neighbouring_prefixes_are_kept(dst, dst_len):
    assert parse.route(rt(dst, dst_len, oif=3)) is not None


@pytest.mark.parametrize("family", [AF_BRIDGE, AF_MPLS, 0])
def test_other_families_are_ignored(family):
    assert parse.route(rt(None, 0, family=family, oif=3, table_attr=None)) is None


def test_ipv4_route_via_an_ipv6_gateway():
    # What FRR installs for BGP unnumbered (RFC 5549): 10.9.0.0/16 via inet6 fe80::1 dev ...
    r = parse.route(rt("10.9.0.0", 16, oif=3, via={"family": AF_INET6, "addr": "fe80::1"}))
    assert r.nexthops == (NextHop(3, ip("fe80::1")),)
    r = parse.route(rt("10.9.0.0", 16, multipath=[via_nh(3, "fe80::1"), via_nh(4, "fe80::2")]))
    assert r.nexthops == (NextHop(3, ip("fe80::1")), NextHop(4, ip("fe80::2")))


def via_nh(oif: int, gateway: str) -> dict:
    return {"oif": oif, "hops": 0, "flags": 0, "attrs": [("RTA_VIA", {"family": AF_INET6, "addr": gateway})]}


def test_route_on_a_nexthop_object_never_looks_connected():
    # pyroute2 0.9 does not name RTA_NH_ID (attribute 30); with nexthop_compat_mode on (the
    # default) the kernel also sends the expanded next hops, which is what parse reads.
    expanded = _decoded(rtmsg, with_raw_attr(route_bytes("10.9.0.0", 16, gateway="10.0.1.2", oif=3), RTA_NH_ID, 7))
    r = parse.route(expanded)
    assert r.kind is RouteKind.OTHER or r.nexthops == (NextHop(3, ip("10.0.1.2")),)
    # Without the expansion nothing in it may pass for a next hop the switch could use.
    bare = parse.route(_decoded(rtmsg, with_raw_attr(route_bytes("10.9.0.0", 16), RTA_NH_ID, 7)))
    assert bare.kind is RouteKind.OTHER or all(h.ifindex == 0 for h in bare.nexthops)


# --- neighbours ----------------------------------------------------------------------------------


@pytest.mark.parametrize("state", [NUD_REACHABLE, NUD_STALE, NUD_DELAY, NUD_PROBE, NUD_PERMANENT, NUD_NOARP,
                                   NUD_REACHABLE | NUD_NOARP])
def test_neighbour_with_lladdr_in_a_valid_state_is_resolved(state):
    n = parse.neighbour(nd(3, "10.0.1.2", "02:00:00:00:01:02", state))
    assert n == Neighbour(3, ip("10.0.1.2"), mac_to_int("02:00:00:00:01:02"), state)
    assert n.resolved


@pytest.mark.parametrize("state", [NUD_FAILED, NUD_INCOMPLETE, 0])
def test_neighbour_in_an_invalid_state_is_unresolved_even_with_a_mac(state):
    n = parse.neighbour(nd(3, "10.0.1.2", "02:00:00:00:01:02", state))
    assert n.mac == mac_to_int("02:00:00:00:01:02") and not n.resolved


def test_neighbour_without_lladdr_is_unresolved():
    n = parse.neighbour(nd(3, "10.0.1.2", None, NUD_INCOMPLETE))
    assert n == Neighbour(3, ip("10.0.1.2"), None, NUD_INCOMPLETE) and not n.resolved
    n = parse.neighbour(nd(3, "10.0.1.2", None, NUD_REACHABLE))
    assert n.mac is None and not n.resolved


def test_neighbour_with_zero_lladdr_has_no_mac():
    n = parse.neighbour(nd(3, "10.0.1.2", "00:00:00:00:00:00", NUD_NOARP))
    assert n.mac is None and not n.resolved


def test_ipv6_neighbour():
    n = parse.neighbour(nd(4, "fe80::2", "02:00:00:00:02:02", NUD_STALE))
    assert n == Neighbour(4, ip("fe80::2"), mac_to_int("02:00:00:00:02:02"), NUD_STALE) and n.resolved
    assert n.key.ip == ip("fe80::2") and n.key.ifindex == 4


def test_bridge_fdb_entries_and_entries_without_dst_are_ignored():
    assert parse.neighbour(nd(3, None, "02:00:00:00:01:02", NUD_PERMANENT, family=AF_BRIDGE)) is None
    # A VXLAN fdb entry names its remote VTEP in NDA_DST: still not a neighbour.
    assert parse.neighbour(nd(5, "192.0.2.9", "02:00:00:00:01:02", NUD_PERMANENT, family=AF_BRIDGE)) is None
    assert parse.neighbour(nd(3, None, "02:00:00:00:01:02", NUD_PERMANENT, family=AF_INET)) is None


# --- links and addresses -------------------------------------------------------------------------


def test_link():
    assert parse.link(lk(3, "tap1")) == Link(3, "tap1", True, True)
    assert parse.link(lk(3, "tap1", flags=IFF_UP, carrier=0)) == Link(3, "tap1", True, False)
    assert parse.link(lk(4, "tap2", flags=0, carrier=None)) == Link(4, "tap2", False, False)


def test_ipv4_address_prefers_the_local_address():
    assert parse.address(ad(3, "10.0.1.1", 24)) == Address(3, ipaddress.ip_interface("10.0.1.1/24"))
    # Point to point: IFA_ADDRESS is the peer, IFA_LOCAL ours.
    assert parse.address(ad(3, "10.9.9.2", 32, local="10.9.9.1")) == \
        Address(3, ipaddress.ip_interface("10.9.9.1/32"))


def test_ipv6_address():
    assert parse.address(ad(3, "2001:db8:1::1", 64)) == Address(3, ipaddress.ip_interface("2001:db8:1::1/64"))


def test_address_without_address_or_of_another_family_is_ignored():
    assert parse.address(ad(3, None, 24, family=AF_INET)) is None
    assert parse.address(ad(3, "10.0.1.1", 24, family=AF_BRIDGE)) is None


def unaligned(data: bytes) -> bytes:
    """The message with a last, 5-byte attribute: its length is no multiple of 4, as netlink allows;
    the padding up to the next message follows it."""
    data = data + struct.pack("=HHB", 5, 0x3FF, 7)
    return struct.pack("=I", len(data)) + data[4:] + b"\0\0\0"


# --- the narrow decoder agrees with pyroute2 + parse.route ------------------------------------------


ROUTES = {
    "v4-gateway": route_bytes("10.9.0.0", 16, gateway="10.0.1.2", oif=3, priority=20),
    "v6-gateway": route_bytes("2001:db8:99::", 48, gateway="fe80::1", oif=4, priority=1024),
    # As the kernel sends IPv6 routes: RTA_PREF, one byte, padded, before the rest.
    "v6-with-pref": route_bytes("2001:db8:99::", 48, pref=0, gateway="fe80::1", oif=4, priority=1024),
    "v4-connected": route_bytes("10.0.1.0", 24, oif=3, prefsrc="10.0.1.1"),
    "v6-connected": route_bytes("2001:db8:1::", 64, oif=3, priority=256),
    "v4-host": route_bytes("10.0.1.7", gateway="10.0.2.2", oif=4),
    "v6-host": route_bytes("2001:db8::7", gateway="fe80::2", oif=4),
    "v4-default": route_bytes(None, 0, family=AF_INET, gateway="10.0.1.2", oif=3),
    "v6-default": route_bytes(None, 0, family=AF_INET6, gateway="fe80::1", oif=3, priority=1024),
    "host-bits": route_bytes("10.9.1.1", 16, gateway="10.0.1.2", oif=3),
    "v4-multipath": route_bytes("10.9.0.0", 16, multipath=[nh(4, "10.0.2.2", hops=2), nh(3, "10.0.1.2"),
                                                           nh(5, "10.0.3.2", hops=9, flags=RTNH_F_LINKDOWN)]),
    "v6-multipath": route_bytes("2001:db8:99::", 48, priority=1024, multipath=[nh(4, "fe80::2"),
                                                                               nh(3, "fe80::1", hops=1)]),
    "multipath-no-gateway": route_bytes("10.9.0.0", 16, multipath=[nh(3), nh(4)]),
    "linkdown": route_bytes("10.9.0.0", 16, gateway="10.0.1.2", oif=3, flags=RTNH_F_LINKDOWN),
    "blackhole": route_bytes("10.66.0.0", 16, rtype=RTN_BLACKHOLE, priority=7),
    "unreachable-v6": route_bytes("2001:db8:66::", 48, rtype=RTN_UNREACHABLE, priority=1024),
    "prohibit": route_bytes("10.66.0.0", 16, rtype=RTN_PROHIBIT),
    "local-table": route_bytes("10.0.1.1", oif=3, table=RT_TABLE_LOCAL, rtype=RTN_LOCAL),
    "local-table-header-only": route_bytes("10.9.0.0", 16, oif=3, table=RT_TABLE_LOCAL, table_attr=None),
    "table-100": route_bytes("10.9.0.0", 16, gateway="10.0.1.2", oif=3, table=100),
    "table-1000": route_bytes("10.9.0.0", 16, gateway="10.0.1.2", oif=3, table=RT_TABLE_COMPAT,
                              table_attr=1000),
    "main-header-only": route_bytes("10.9.0.0", 16, gateway="10.0.1.2", oif=3, table_attr=None),
    "fe80-64": route_bytes("fe80::", 64, oif=3, priority=256),
    "fe80-host": route_bytes("fe80::1:2", 128, oif=3),
    "v4-link-local": route_bytes("169.254.0.0", 16, oif=3),
    "ff00-8": route_bytes("ff00::", 8, oif=3, priority=256),
    "v4-multicast": route_bytes("224.0.0.0", 4, oif=3),
    "mcast-type": route_bytes("239.1.1.1", 32, oif=3, rtype=RTN_MULTICAST),
    "fec0": route_bytes("fec0::", 10, oif=3),
    "bridge": route_bytes(None, 0, family=AF_BRIDGE, oif=3),
    "delete": route_bytes("10.9.0.0", 16, kind=25, gateway="10.0.1.2", oif=3, priority=20),
    "table-attribute-wins": route_bytes("10.9.0.0", 16, gateway="10.0.1.2", oif=3, table_attr=1000),
    "unaligned": unaligned(route_bytes("10.9.0.0", 16, gateway="10.0.1.2", oif=3)),
}


@pytest.mark.parametrize("data", ROUTES.values(), ids=ROUTES.keys())
def test_narrow_decoder_agrees_with_parse_route(data):
    assert decode_route(data) == parse.route(_decoded(rtmsg, data))


def test_narrow_decoder_at_an_offset_in_a_datagram():
    # Each message in turn, the unaligned one included, found at its offset.
    data = b"".join(ROUTES.values())
    offsets = list(rtdecode.split(data))
    assert [kind for kind, _ in offsets] == [25 if name == "delete" else 24 for name in ROUTES]
    assert [decode_route(data, o) for _, o in offsets] == \
        [parse.route(_decoded(rtmsg, d)) for d in ROUTES.values()]


def test_both_decoders_treat_nexthop_object_routes_alike():
    data = with_raw_attr(route_bytes("10.9.0.0", 16, gateway="10.0.1.2", oif=3), RTA_NH_ID, 7)
    assert decode_route(data) == parse.route(_decoded(rtmsg, data))


def test_narrow_decoder_sends_nexthop_object_routes_to_the_kernel():
    data = with_raw_attr(route_bytes("10.9.0.0", 16, gateway="10.0.1.2", oif=3), RTA_NH_ID, 7)
    assert decode_route(data) == Route(net("10.9.0.0/16"), 0, RouteKind.OTHER, ())


def test_narrow_decoder_reads_an_ipv6_gateway_of_an_ipv4_route():
    data = route_bytes("10.9.0.0", 16, oif=3, via={"family": AF_INET6, "addr": "fe80::1"})
    assert decode_route(data).nexthops == (NextHop(3, ip("fe80::1")),)
    data = route_bytes("10.9.0.0", 16, multipath=[via_nh(3, "fe80::1"), via_nh(4, "fe80::2")])
    assert decode_route(data).nexthops == (NextHop(3, ip("fe80::1")), NextHop(4, ip("fe80::2")))


def test_split_stops_at_a_short_or_broken_header():
    one = ROUTES["v4-gateway"]
    assert [o for _, o in rtdecode.split(one + b"\0" * 15)] == [0]
    assert [o for _, o in rtdecode.split(one + struct.pack("=IH", 4, 24) + b"\0" * 20)] == [0]


def test_source_specific_route_is_left_to_the_kernel():
    m = rtmsg()
    data = _raw(m, 24, {"family": AF_INET6, "dst_len": 32, "src_len": 64, "table": RT_TABLE_MAIN,
                        "type": RTN_UNICAST}, [("RTA_TABLE", 254), ("RTA_DST", "2001:db8::"),
                                               ("RTA_SRC", "2001:db8:1::"), ("RTA_GATEWAY", "fe80::1"),
                                               ("RTA_OIF", 3), ("RTA_PRIORITY", 1024)])
    for route in (parse.route(_decoded(rtmsg, data)), decode_route(data)):
        assert route is None or route.kind is RouteKind.OTHER


@pytest.mark.parametrize("family", [rtnl.AF_INET, rtnl.AF_INET6])
def test_the_never_in_fib_rule_is_multicast_and_link_local_as_ipaddress_defines_them(family):
    """rtnl.NEVER_IN_FIB against the standard library's own definitions, over prefixes around each
    range's edges; and the first-byte filter rtcolumns uses keeps every one of them out."""
    bits = 32 if family == rtnl.AF_INET else 128
    network = ipaddress.IPv4Network if family == rtnl.AF_INET else ipaddress.IPv6Network
    first_bytes = rtnl.never_in_fib_first_bytes(family)
    values = {0, 1 << (bits - 1), (1 << bits) - 1}
    for _, net_value, length in (r for r in rtnl.NEVER_IN_FIB if r[0] == family):
        for delta in (-1, 0, 1):
            values.add((net_value + (delta << (bits - length))) % (1 << bits))
            values.add(((net_value | ((1 << (bits - length)) - 1)) + delta) % (1 << bits))
    for value in values:
        for length in range(bits + 1):
            dst = network((value >> (bits - length) << (bits - length), length))
            expected = dst.is_multicast or (dst.prefixlen > 0 and dst.is_link_local)
            assert rtnl.never_in_fib(family, int(dst.network_address), length) == expected, dst
            if expected:
                assert (int(dst.network_address) >> (bits - 8)) in first_bytes, dst
