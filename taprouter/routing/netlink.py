"""Watches a router netns over rtnetlink: subscribe first, then dump; resync on overflow."""

from __future__ import annotations

import errno
import logging
import select
import threading

from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import (RTMGRP_IPV4_IFADDR, RTMGRP_IPV4_ROUTE, RTMGRP_IPV6_IFADDR,
                                   RTMGRP_IPV6_ROUTE, RTMGRP_LINK, RTMGRP_NEIGH)

from ..bridge.netns import iproute
from .mirror import KernelMirror
from .parse import AF_INET, AF_INET6, RT_TABLE_MAIN

LOG = logging.getLogger("taprouter.netlink")

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
        events = iproute(self.netns, rcvbuf=self.rcvbuf)
        try:
            events.bind(groups=GROUPS)
            self.dump()  # after subscribing: nothing is lost in between
            self.ready.set()
            while not self._stop.is_set():
                readable, _, _ = select.select([events.fileno()], [], [], 0.5)
                if not readable:
                    continue
                try:
                    messages = events.get()
                except (NetlinkError, OSError) as exc:
                    if getattr(exc, "code", None) == errno.ENOBUFS or getattr(exc, "errno", None) == errno.ENOBUFS:
                        self.resyncs += 1
                        LOG.warning("netns %s: netlink socket overflowed; resyncing from a fresh dump",
                                    self.netns)
                        self.dump()
                        continue
                    raise
                for msg in messages:
                    self.mirror.apply(msg)
        finally:
            events.close()
