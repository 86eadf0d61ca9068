"""A narrow decoder for rtnetlink route messages: the hot path of full-table loads.

pyroute2 decodes ~13K routes/s and takes ~114 s to dump a million; this reads
only the fields the FIB needs, straight from the bytes, into the same typed
Route that parse.route() builds from a pyroute2 message (tests check both
agree, message for message). Everything else still goes through pyroute2.
"""

from __future__ import annotations

import ipaddress
import struct

from .. import prefix
from .model import NextHop
from .rtnl import (AF_INET, AF_INET6, RT_TABLE_MAIN, RTA_DST, RTA_GATEWAY, RTA_MULTIPATH, RTA_NH_ID, RTA_OIF,
                   RTA_PRIORITY, RTA_TABLE, RTA_VIA, RTN_UNICAST, RTNH_F_LINKDOWN, never_in_fib)

_NLMSGHDR = struct.Struct("=IHHII")
_RTMSG = struct.Struct("=BBBBBBBBI")  # family dst_len src_len tos table protocol scope type flags
_RTATTR = struct.Struct("=HH")
_RTNEXTHOP = struct.Struct("=HBBi")  # len flags hops ifindex
_U32 = struct.Struct("=I")

_U16 = struct.Struct("=H")

# Full tables have few distinct next hops: build each typed next hop once.
_HOP_CACHE: dict[tuple, tuple[NextHop, ...]] = {}
_HOP_CACHE_MAX = 65536
_MULTI_CACHE: dict[tuple, tuple[NextHop, ...]] = {}


def _address(family: int, raw: bytes):
    return ipaddress.IPv4Address(raw) if family == AF_INET else ipaddress.IPv6Address(raw)


def _single_hop(family: int, oif: int, gateway_raw: bytes | None, linkdown: bool) -> tuple[NextHop, ...]:
    key = (family, oif, gateway_raw, linkdown)
    hops = _HOP_CACHE.get(key)
    if hops is None:
        if len(_HOP_CACHE) >= _HOP_CACHE_MAX:
            _HOP_CACHE.clear()
        gateway = _address(family, gateway_raw) if gateway_raw else None
        hops = _HOP_CACHE[key] = (NextHop(ifindex=oif, gateway=gateway, linkdown=linkdown),)
    return hops


_ENTRIES: dict[tuple[int, int], tuple] = {}


def entry(metric: int, hops: tuple[NextHop, ...] | None) -> tuple:
    """The mirror's (metric, hops) for a route, shared by every route that has the same.

    A full table is a million routes over a handful of next hops: one tuple per route
    would be a million objects for the garbage collector to walk on every full
    collection (and 56 MB). Keyed by the identity of the interned hop tuple, which the
    cached entry keeps alive.
    """
    key = (metric, id(hops))
    found = _ENTRIES.get(key)
    if found is None or found[1] is not hops:
        if len(_ENTRIES) >= _HOP_CACHE_MAX:
            _ENTRIES.clear()
        found = _ENTRIES[key] = (metric, hops)
    return found


def _nexthops(family: int, data: bytes, start: int, end: int) -> list[NextHop]:
    hops = []
    while start + _RTNEXTHOP.size <= end:
        length, flags, hops_count, ifindex = _RTNEXTHOP.unpack_from(data, start)
        if length < _RTNEXTHOP.size:
            break
        gateway = None
        pos, stop = start + _RTNEXTHOP.size, start + length
        while pos + 4 <= stop:
            alen, atype = _RTATTR.unpack_from(data, pos)
            if alen < 4:
                break
            if atype == RTA_GATEWAY:
                gateway = _address(family, data[pos + 4:pos + alen])
            elif atype == RTA_VIA:  # struct rtvia: a 16-bit family, then the address
                gateway = _address(_U16.unpack_from(data, pos + 4)[0], data[pos + 6:pos + alen])
            pos += (alen + 3) & ~3
        hops.append(NextHop(ifindex=ifindex, gateway=gateway, weight=hops_count + 1,
                            linkdown=bool(flags & RTNH_F_LINKDOWN)))
        start += (length + 3) & ~3
    return hops


def decode(data: bytes, offset: int = 0) -> tuple[int, int, tuple[NextHop, ...] | None] | None:
    """One route message at offset (its netlink header included) as (prefix, metric, next hops).

    The prefix is packed (taprouter.prefix); next hops are None for a route the kernel must
    judge (blackhole, unreachable, source-specific, nexthop objects). None for a route the FIB
    never carries (another table, multicast, link-local).
    """
    length = _NLMSGHDR.unpack_from(data, offset)[0]
    end = offset + length
    if length < 16 + _RTMSG.size or end > len(data):
        return None
    family, dst_len, src_len, _tos, table, _proto, _scope, rtype, flags = _RTMSG.unpack_from(data, offset + 16)
    if family != AF_INET and family != AF_INET6:
        return None
    dst_raw = None
    oif = 0
    gateway_raw = None
    gateway_family = family
    metric = 0
    multipath = None
    nh_id = False
    pos = offset + 16 + _RTMSG.size
    while pos + 4 <= end:
        alen, atype = _RTATTR.unpack_from(data, pos)
        if alen < 4:
            break
        if atype == RTA_DST:
            dst_raw = data[pos + 4:pos + alen]
        elif atype == RTA_OIF:
            oif = _U32.unpack_from(data, pos + 4)[0]
        elif atype == RTA_GATEWAY:
            gateway_raw = data[pos + 4:pos + alen]
        elif atype == RTA_VIA:  # another family's gateway: IPv4 via IPv6 (RFC 5549)
            gateway_family = _U16.unpack_from(data, pos + 4)[0]
            gateway_raw = data[pos + 6:pos + alen]
        elif atype == RTA_PRIORITY:
            metric = _U32.unpack_from(data, pos + 4)[0]
        elif atype == RTA_TABLE:
            table = _U32.unpack_from(data, pos + 4)[0]
        elif atype == RTA_MULTIPATH:
            multipath = (pos + 4, pos + alen)
        elif atype == RTA_NH_ID:
            nh_id = True
        pos += (alen + 3) & ~3
    if table != RT_TABLE_MAIN:
        return None
    value = int.from_bytes(dst_raw, "big") if dst_raw else 0
    if never_in_fib(family, value, dst_len):
        return None
    # prefix.pack, inline; the shift drops any host bits.
    pk = (dst_len << 32 | value >> (32 - dst_len) if family == AF_INET
          else prefix.V6_TAG | dst_len << 128 | value >> (128 - dst_len))
    if nh_id or src_len or rtype != RTN_UNICAST:
        return pk, metric, None
    if multipath is not None:
        # Interned like single hops: the FIB keys its work on the identity of a hop tuple.
        raw = data[multipath[0]:multipath[1]]
        hops = _MULTI_CACHE.get((family, raw))
        if hops is None:
            if len(_MULTI_CACHE) >= _HOP_CACHE_MAX:
                _MULTI_CACHE.clear()
            hops = _MULTI_CACHE[(family, raw)] = tuple(sorted(_nexthops(family, data, multipath[0], multipath[1])))
        return pk, metric, hops
    return pk, metric, _single_hop(gateway_family, oif, gateway_raw, bool(flags & RTNH_F_LINKDOWN))


def split(data: bytes):
    """(message type, offset) for each netlink message in a datagram."""
    offset = 0
    size = len(data)
    while offset + 16 <= size:
        length, kind = _NLMSGHDR.unpack_from(data, offset)[:2]
        if length < 16 or offset + length > size:
            return  # a truncated message: nothing after it can be framed either
        yield kind, offset
        offset += (length + 3) & ~3

