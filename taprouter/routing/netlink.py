"""Watches a router netns over rtnetlink: subscribe first, then dump; resync on overflow."""

from __future__ import annotations

import errno
import logging
import select
import socket
import struct
import threading

from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.ndmsg import ndmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg
from pyroute2.netlink.rtnl import (RTMGRP_IPV4_IFADDR, RTMGRP_IPV4_ROUTE, RTMGRP_IPV6_IFADDR,
                                   RTMGRP_IPV6_ROUTE, RTMGRP_LINK, RTMGRP_NEIGH)

from ..bridge import netns
from ..bridge.netns import iproute
from .mirror import KernelMirror
from .parse import AF_INET, AF_INET6, RT_TABLE_MAIN

LOG = logging.getLogger("taprouter.netlink")

NETLINK_ROUTE = 0
RECV_SIZE = 1 << 20
MESSAGE_CLASSES = {16: ifinfmsg, 17: ifinfmsg, 20: ifaddrmsg, 21: ifaddrmsg, 24: rtmsg, 25: rtmsg,
                   28: ndmsg, 29: ndmsg}

GROUPS = (RTMGRP_LINK | RTMGRP_NEIGH | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE | RTMGRP_IPV4_IFADDR
          | RTMGRP_IPV6_IFADDR)


class Watcher:
    """One thread per router netns, feeding a KernelMirror."""

    def __init__(self, netns: str, mirror: KernelMirror, rcvbuf: int = 8 << 20):
        self.netns = netns
        self.mirror = mirror
        self.rcvbuf = rcvbuf
        self.resyncs = 0
        self.ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"netlink-{netns}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def dump(self) -> None:
        """A full dump on a socket of its own, so replies never mix with events."""
        with iproute(self.netns) as ipr:
            links = list(ipr.get_links())
            routes = list(ipr.get_routes(family=AF_INET, table=RT_TABLE_MAIN))
            routes += list(ipr.get_routes(family=AF_INET6, table=RT_TABLE_MAIN))
            neighbours = list(ipr.get_neighbours(family=AF_INET)) + list(ipr.get_neighbours(family=AF_INET6))
            addresses = list(ipr.get_addr())
        self.mirror.replace(links, routes, neighbours, addresses)
        LOG.info("netns %s: dumped %d links, %d routes, %d neighbours", self.netns, len(links),
                 len(routes), len(neighbours))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._watch()
            except Exception:  # keep watching whatever happened; the kernel stays the truth
                LOG.exception("netns %s: watcher failed; resubscribing in 1 s", self.netns)
                self._stop.wait(1.0)

    def _watch(self) -> None:
        # A raw socket rather than pyroute2's: its get() drains the socket into an
        # internal queue and hands back one message per call, so select() on the fd
        # stalls the rest; and overflow (ENOBUFS) must reach us as an error.
        with netns.entered(self.netns):
            events = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        try:
            events.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
            events.bind((0, GROUPS))
            self.dump()  # after subscribing: nothing is lost in between
            self.ready.set()
            while not self._stop.is_set():
                readable, _, _ = select.select([events], [], [], 0.5)
                if not readable:
                    continue
                try:
                    data = events.recv(RECV_SIZE)
                except OSError as exc:
                    if exc.errno != errno.ENOBUFS:
                        raise
                    self.resyncs += 1
                    LOG.warning("netns %s: netlink socket overflowed; resyncing from a fresh dump",
                                self.netns)
                    self.dump()
                    continue
                for msg in decode(data):
                    self.mirror.apply(msg)
        finally:
            events.close()


def decode(data: bytes):
    """Split a netlink datagram into decoded pyroute2 messages of the kinds the mirror keeps."""
    offset = 0
    while offset + 16 <= len(data):
        length, kind = struct.unpack_from("=IH", data, offset)
        if length < 16:
            return
        cls = MESSAGE_CLASSES.get(kind)
        if cls is not None:
            msg = cls(data[offset:offset + length])
            msg.decode()
            yield msg
        offset += (length + 3) & ~3
