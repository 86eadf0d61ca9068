"""Router interface addresses: which cannot work, which are odd, and which overlap another port's."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

Interface = ipaddress.IPv4Interface | ipaddress.IPv6Interface

_THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")
_CLASS_E = ipaddress.IPv4Network("240.0.0.0/4")
_LIMITED_BROADCAST = ipaddress.IPv4Address("255.255.255.255")


def refusal(iface: Interface) -> str | None:
    """Why a port cannot have this address, or None. Linux 6.18 takes a 0.0.0.0/8 or an
    IPv4-mapped address on an interface, but a ping between two network namespaces found
    neither reachable."""
    ip = iface.ip
    if ip.is_multicast or ip.is_unspecified or ip.is_loopback:
        return "cannot be a router interface address"
    if isinstance(ip, ipaddress.IPv4Address):
        if ip == _LIMITED_BROADCAST:
            return "is the limited broadcast address: every host takes it as broadcast"
        if iface.network.prefixlen < 31 and ip in (iface.network.network_address,
                                                    iface.network.broadcast_address):
            return "is the network or broadcast address of its subnet"
        if ip in _THIS_NETWORK:
            return ("is in 0.0.0.0/8, 'this network' (RFC 1122): Linux puts no route to it in the "
                    "table, so no host there is reachable")
    elif ip.ipv4_mapped is not None:
        return "is an IPv4-mapped address (::ffff:0:0/96), which Linux does not route to"
    return None


def oddity(iface: Interface) -> str | None:
    """Why an address that works is still likely a mistake, or None. A warning, not an error.

    IPv4 link-local addresses (169.254.0.0/16) are not odd: BGP peering links use them."""
    ip = iface.ip
    if isinstance(ip, ipaddress.IPv4Address):
        if ip in _CLASS_E:
            return ("is in 240.0.0.0/4, reserved: Linux routes it, but many hosts and switches "
                    "drop it")
        return None
    if iface.network.prefixlen < 127 and ip == iface.network.network_address:
        # RFC 6164 takes /127 links out of the anycast rule.
        return (f"is the subnet-router anycast address of {iface.network} (RFC 4291), which every "
                "router on the link answers: give the port an address with a non-zero interface id")
    return None


@dataclass(frozen=True)
class Overlap:
    """An address of `port` whose subnet meets the subnet of `other`'s address `with_`.
    `host` when the address is a /32 or /128 inside the other's subnet: it adds no route, so it
    works, oddly (the other port answers ARP for it too)."""
    port: Any  # whatever the caller keyed its addresses by (a port number, a configvlan.PortTap)
    address: Interface
    other: Any
    with_: Interface
    host: bool


def overlaps(addresses: list[tuple[Any, Interface]]) -> list[Overlap]:
    """Addresses (port, address) of one router whose subnets meet a subnet on another port.

    One kernel routing table reaches a destination through one port: two ports' connected
    subnets that overlap leave the hosts in the overlap reachable on one of them only, and
    ARP and ND for them leave by the wrong one. IPv6 link-local subnets are left out: every
    IPv6 port has fe80::/64."""
    blocks = sorted(((iface.version, int(iface.network.network_address), iface.network.prefixlen,
                      port, iface)
                     for port, iface in addresses if not (iface.version == 6 and iface.ip.is_link_local)),
                    key=lambda b: b[:3])
    found = []
    open_blocks: list[tuple[int, int, int, Interface]] = []  # (version, last address, port, address)
    for version, first, _, port, iface in blocks:
        # CIDR blocks nest or are apart, so the open ones that reach `first` all contain this one.
        while open_blocks and (open_blocks[-1][0] != version or open_blocks[-1][1] < first):
            open_blocks.pop()
        for _, _, other, with_ in reversed(open_blocks):
            if other != port:
                host = iface.network.prefixlen == iface.max_prefixlen
                later, earlier = sorted(((port, iface), (other, with_)), key=lambda p: p[0], reverse=True)
                found.append(Overlap(later[0], later[1], earlier[0], earlier[1], host))
                break
        open_blocks.append((version, int(iface.network.broadcast_address), port, iface))
    return found
