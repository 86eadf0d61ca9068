"""Route prefixes packed into one int, the key of the full-table hot path.

A million `ipaddress` networks cost about a microsecond each to build and
several hundred bytes each to keep; a packed int costs neither. The layout is
`value << 9 | is_ipv6 << 8 | length`, so equal prefixes are equal ints, and
the value, family and length come back with shifts.
"""

from __future__ import annotations

import ipaddress

V6_BIT = 1 << 8


def pack(version: int, value: int, length: int) -> int:
    return value << 9 | (V6_BIT if version == 6 else 0) | length


def is_v6(pk: int) -> bool:
    return bool(pk & V6_BIT)


def length(pk: int) -> int:
    return pk & 0xFF


def value(pk: int) -> int:
    return pk >> 9


def width(pk: int) -> int:
    return 128 if pk & V6_BIT else 32


def mask(pk: int) -> int:
    bits = width(pk)
    plen = pk & 0xFF
    return ((1 << plen) - 1) << (bits - plen)


def from_network(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> int:
    return pack(net.version, int(net.network_address), net.prefixlen)


def to_network(pk: int) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    if pk & V6_BIT:
        return ipaddress.IPv6Network((pk >> 9, pk & 0xFF))
    return ipaddress.IPv4Network((pk >> 9, pk & 0xFF))


def contains(outer: int, inner: int) -> bool:
    """Whether prefix `inner` lies within prefix `outer` (equal counts), same family only."""
    if (outer ^ inner) & V6_BIT:
        return False
    olen, ilen = outer & 0xFF, inner & 0xFF
    if ilen < olen:
        return False
    shift = (128 if outer & V6_BIT else 32) - olen
    return (outer >> 9) >> shift == (inner >> 9) >> shift
