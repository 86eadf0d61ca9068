"""Persistent TAP interfaces in a router's netns: open or re-adopt, configure, set carrier."""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import logging
import os
import struct
from dataclasses import dataclass

import pytun
from pyroute2 import NetlinkError
from pyroute2.netlink.rtnl.ifaddrmsg import IFA_F_NODAD

from .. import netns

LOG = logging.getLogger(__name__)

TUNSETCARRIER = 0x400454E2  # _IOW('T', 226, int), Linux 4.19+


class TapError(Exception):
    pass


def open_tap(netns_name: str, name: str) -> int:
    """Open (creating if needed) a persistent TAP in a netns; returns a non-blocking fd.

    An existing TAP with no descriptor attached is re-adopted as it is, so its
    addresses, routes and neighbours survive a restart of the daemon.
    """
    try:
        with netns.entered(netns_name):
            dev = pytun.TunTapDevice(name=name, flags=pytun.IFF_TAP | pytun.IFF_NO_PI)
            try:
                dev.persist(True)
                fd = os.dup(dev.fileno())
            finally:
                dev.close()
    except pytun.Error as exc:
        raise TapError(f"cannot open TAP {name} in netns {netns_name}: {exc}") from None
    os.set_blocking(fd, False)
    return fd


def set_carrier(fd: int, up: bool) -> None:
    """Carrier follows the switch port, set explicitly rather than by a process exiting."""
    fcntl.ioctl(fd, TUNSETCARRIER, struct.pack("i", 1 if up else 0))


@dataclass(frozen=True)
class LinkState:
    name: str
    index: int
    mac: str
    up: bool
    carrier: bool
    mtu: int
    addresses: tuple[ipaddress.IPv4Interface | ipaddress.IPv6Interface, ...]


def configure(netns_name: str, name: str, mac: str, addresses) -> LinkState:
    """Give a TAP its switch port's MAC and the configured addresses, and bring it up.

    Addresses already on the TAP are left alone: the kernel is the source of
    truth, and an operator may have added some with `ip`.
    """
    with netns.iproute(netns_name) as ipr:
        links = ipr.link_lookup(ifname=name)
        if not links:
            raise TapError(f"TAP {name} vanished from netns {netns_name}")
        index = links[0]
        link = ipr.get_links(index)[0]
        if link.get_attr("IFLA_ADDRESS") != mac:
            # The MAC must be set while the link is down, or the kernel's IPv6
            # link-local address keeps deriving from the old one.
            ipr.link("set", index=index, state="down")
            ipr.link("set", index=index, address=mac)
        ipr.link("set", index=index, state="up")
        for iface in addresses:
            try:
                ipr.addr("add", index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen,
                         **({"flags": IFA_F_NODAD} if iface.version == 6 else {}))
            except NetlinkError as exc:
                if exc.code != errno.EEXIST:
                    raise TapError(f"cannot add {iface} to {name}: {exc}") from None
    return link_state(netns_name, name)


def remove_addresses(netns_name: str, name: str, addresses) -> None:
    """Take addresses the config no longer has off a TAP (one already gone is no error)."""
    with netns.iproute(netns_name) as ipr:
        links = ipr.link_lookup(ifname=name)
        if not links:
            raise TapError(f"TAP {name} vanished from netns {netns_name}")
        for iface in addresses:
            try:
                ipr.addr("del", index=links[0], address=str(iface.ip), prefixlen=iface.network.prefixlen)
            except NetlinkError as exc:
                if exc.code != errno.EADDRNOTAVAIL:
                    raise TapError(f"cannot remove {iface} from {name}: {exc}") from None


def link_state(netns_name: str, name: str) -> LinkState:
    with netns.iproute(netns_name) as ipr:
        links = ipr.link_lookup(ifname=name)
        if not links:
            raise TapError(f"no interface {name} in netns {netns_name}")
        link = ipr.get_links(links[0])[0]
        addresses = []
        for msg in ipr.get_addr(index=links[0]):
            addresses.append(ipaddress.ip_interface(f"{msg.get_attr('IFA_ADDRESS')}/{msg['prefixlen']}"))
        return LinkState(
            name=name, index=links[0], mac=link.get_attr("IFLA_ADDRESS"),
            up=bool(link["flags"] & 1), carrier=bool(link.get_attr("IFLA_CARRIER")),
            mtu=link.get_attr("IFLA_MTU"), addresses=tuple(addresses))


@dataclass(frozen=True)
class LinkCounters:
    """The kernel's counters of an interface (what the relay wrote to a TAP is its rx)."""

    rx_packets: int
    tx_packets: int
    rx_bytes: int
    tx_bytes: int
    rx_dropped: int
    tx_dropped: int


def links(netns_name: str, names: set[str]) -> dict[str, tuple[LinkState, LinkCounters | None]]:
    """The named interfaces of a netns that exist, with their counters: one netlink dump of links
    and one of addresses, whatever the number of ports (the control socket asks on every status)."""
    found: dict[str, tuple[LinkState, LinkCounters | None]] = {}
    with netns.iproute(netns_name) as ipr:
        by_index = {}
        for link in ipr.get_links():
            name = link.get_attr("IFLA_IFNAME")
            if name in names:
                by_index[link["index"]] = (name, link)
        addresses: dict[int, list] = {index: [] for index in by_index}
        for msg in ipr.get_addr():
            if msg["index"] in addresses:
                addresses[msg["index"]].append(
                    ipaddress.ip_interface(f"{msg.get_attr('IFA_ADDRESS')}/{msg['prefixlen']}"))
    for index, (name, link) in by_index.items():
        stats = link.get_attr("IFLA_STATS64")
        counters = None if stats is None else LinkCounters(
            stats["rx_packets"], stats["tx_packets"], stats["rx_bytes"], stats["tx_bytes"], stats["rx_dropped"],
            stats["tx_dropped"])
        state = LinkState(name=name, index=index, mac=link.get_attr("IFLA_ADDRESS"), up=bool(link["flags"] & 1),
                          carrier=bool(link.get_attr("IFLA_CARRIER")), mtu=link.get_attr("IFLA_MTU"),
                          addresses=tuple(sorted(addresses[index], key=str)))
        found[name] = (state, counters)
    return found


def delete(netns_name: str, name: str) -> bool:
    """Delete a TAP; True if it existed."""
    if not netns.exists(netns_name):
        return False
    with netns.iproute(netns_name) as ipr:
        links = ipr.link_lookup(ifname=name)
        if not links:
            return False
        ipr.link("del", index=links[0])
        return True
