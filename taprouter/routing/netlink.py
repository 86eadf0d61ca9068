"""Watches a router netns over rtnetlink: subscribe first, then dump; resync on overflow."""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import select
import socket
import struct
import threading
import time

from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.ndmsg import ndmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg
from pyroute2.netlink.rtnl import (RTMGRP_IPV4_IFADDR, RTMGRP_IPV4_ROUTE, RTMGRP_IPV6_IFADDR,
                                   RTMGRP_IPV6_ROUTE, RTMGRP_LINK, RTMGRP_NEIGH)

from .. import netns, prefix
from ..netns import iproute
from . import recvmany, rtdecode, rtshape
from .mirror import KernelMirror
from .rtnl import (AF_INET, AF_INET6, NLM_F_DUMP, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR, RTA_DST, RTA_TABLE,
                   RTM_DELLINK, RTM_DELROUTE, RTM_GETROUTE, RTM_NEWROUTE, never_in_fib)

LOG = logging.getLogger("taprouter.netlink")

NETLINK_ROUTE = 0
# A full table arrives as a million notifications, each taking about a kilobyte of socket
# buffer, faster than Python drains them at the peak of a load; an overflow costs a full
# re-dump. The buffer is memory the kernel only uses while a backlog exists.
EVENTS_RCVBUF = 512 << 20
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
BATCH_SIZE = 8 << 20
BURST_GAP = 0.005  # a wake-up this soon after the last one is part of a burst
BURST_GATHER = 0.001
RECV_SIZE = 1 << 20
MESSAGE_CLASSES = {16: ifinfmsg, 17: ifinfmsg, 20: ifaddrmsg, 21: ifaddrmsg, 24: rtmsg, 25: rtmsg,
                   28: ndmsg, 29: ndmsg}

GROUPS = (RTMGRP_LINK | RTMGRP_NEIGH | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE | RTMGRP_IPV4_IFADDR
          | RTMGRP_IPV6_IFADDR)


class Watcher:
    """One thread per router netns, feeding a KernelMirror."""

    def __init__(self, netns: str, mirror: KernelMirror, rcvbuf: int = EVENTS_RCVBUF):
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
        """A full dump on sockets of their own, so replies never mix with events."""
        routes = dump_routes(self.netns)
        with iproute(self.netns) as ipr:
            links = list(ipr.get_links())
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
            _set_rcvbuf(events, self.rcvbuf)
            events.bind((0, GROUPS))
            self.dump()  # after subscribing: nothing is lost in between
            self.ready.set()
            self.mirror.notify()  # a reconcile that ran before ready was set must run again
            batch, receiver = memoryview(bytearray(RECV_SIZE)), recvmany.Receiver()
            last = 0.0
            while not self._stop.is_set():
                readable, _, _ = select.select([events], [], [], 0.5)
                if not readable:
                    continue
                if time.monotonic() - last < BURST_GAP:
                    # Events are trickling in (the kernel deletes routes at its own pace): gather a
                    # millisecond of them per wake-up, as each wake-up has a fixed cost.
                    time.sleep(BURST_GATHER)
                last = time.monotonic()
                try:
                    data = _receive(events, batch, receiver)
                except OSError as exc:
                    if exc.errno != errno.ENOBUFS and not isinstance(exc, recvmany.Truncated):
                        raise
                    self.resyncs += 1
                    LOG.warning("netns %s: netlink events lost (%s); resyncing from a fresh dump",
                                self.netns, exc.strerror)
                    _drain(events)
                    self.dump()
                    continue
                if self._apply(data):
                    # Linux flushes the IPv4 routes through a deleted link without a word
                    # (no RTM_DELROUTE): only a fresh dump shows they are gone.
                    LOG.info("netns %s: a link was deleted; re-reading its routes from a fresh dump", self.netns)
                    self.dump()
        finally:
            events.close()

    def _apply(self, data: bytes) -> bool:
        """Queued datagrams, joined: their events in order, route events in runs by their shape.
        True if a link was deleted among them."""
        routes = rtshape.route_events(data)
        if routes is not None:  # only routes: the bulk of a full-table load
            if routes:
                self.mirror.apply_routes(routes)
            return False
        link_deleted = False
        # Other messages among them (a neighbour refreshed during a load is enough): the runs
        # of route messages between them still go through the shape decoders.
        start = 0  # where the route messages not yet applied begin
        for kind, offset in rtdecode.split(data):
            if kind == RTM_NEWROUTE or kind == RTM_DELROUTE:
                continue
            if offset > start:
                self._apply_routes(data[start:offset])
            if kind in MESSAGE_CLASSES:
                self.mirror.apply(_pyroute2_message(kind, data, offset))
            link_deleted |= kind == RTM_DELLINK
            start = offset + ((struct.unpack_from("=I", data, offset)[0] + 3) & ~3)
        if start < len(data):
            self._apply_routes(data[start:])
        return link_deleted

    def _apply_routes(self, data: bytes) -> None:
        routes = rtshape.route_events(data)
        if routes:
            self.mirror.apply_routes(routes)


def _set_rcvbuf(sock: socket.socket, size: int) -> None:
    """As asked when privileged (SO_RCVBUFFORCE passes net.core.rmem_max); else as the sysctl allows."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
    except PermissionError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)


def _receive(sock: socket.socket, batch: memoryview, receiver: recvmany.Receiver) -> bytes:
    """Every datagram queued now (up to about BATCH_SIZE), concatenated: each holds whole,
    aligned messages.

    The kernel sends each route change as a datagram of its own: a full table is a
    million of them. Reading them in blocks of a recvmmsg() call, then decoding the lot,
    costs one select() and one decode call per batch instead of per route.
    """
    size = sock.recv_into(batch)  # select() said readable; this one may be of any size
    parts, total = [bytes(batch[:size])], size
    while total < BATCH_SIZE:
        more = receiver.read(sock)
        if not more:
            break
        parts.append(more)
        total += len(more)
    return b"".join(parts)


def _drain(sock: socket.socket) -> None:
    """Discard what is queued: it is older than the dump that follows.

    The kernel reports an overflow once and then drops further events silently
    until the queue has been emptied, so the queue must be empty before the dump
    starts, or changes made during the dump would be lost without an error.
    """
    sock.setblocking(False)
    try:
        while True:
            try:
                sock.recv(RECV_SIZE)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
    finally:
        sock.setblocking(True)


def _pyroute2_message(kind: int, data: bytes, offset: int):
    length = struct.unpack_from("=I", data, offset)[0]
    msg = MESSAGE_CLASSES[kind](data[offset:offset + length])
    msg.decode()
    return msg


def decode(data: bytes):
    """Split a netlink datagram into decoded pyroute2 messages of the kinds the mirror keeps."""
    for kind, offset in rtdecode.split(data):
        if kind in MESSAGE_CLASSES:
            yield _pyroute2_message(kind, data, offset)




def dump_routes(netns_name: str) -> list[tuple]:
    """Every main-table route the FIB may carry, as (prefix, (metric, hops)), read with a raw dump."""
    with netns.entered(netns_name):
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
    routes = []
    with sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        sock.bind((0, 0))
        request = struct.pack("=IHHII", 16 + 12, RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP, 1, 0)
        request += struct.pack("=BBBBBBBBI", 0, 0, 0, 0, 0, 0, 0, 0, 0)  # AF_UNSPEC: both families
        sock.send(request)
        while True:
            data = sock.recv(RECV_SIZE)
            events = rtshape.route_events(data)  # a datagram of routes only: decoded by its shape
            if events is not None:
                routes += [(pk, entry) for pk, entry, _delete in events]
                continue
            for kind, offset in rtdecode.split(data):
                if kind == NLMSG_DONE:
                    return routes
                if kind == NLMSG_ERROR:
                    code = struct.unpack_from("=i", data, offset + 16)[0]
                    raise OSError(-code, f"route dump in netns {netns_name} failed: {os.strerror(-code)}")
                if kind == RTM_NEWROUTE:
                    route = rtdecode.decode(data, offset)
                    if route is not None:
                        routes.append((route[0], route[1:]))


RTM_F_FIB_MATCH = 0x2000
FIB_MATCH_TIMEOUT = 5.0
# iproute2's names (/etc/iproute2/rt_protos, rtnetlink.h's RTN_*), as `ip -json` prints them.
PROTOCOLS = {0: "unspec", 1: "redirect", 2: "kernel", 3: "boot", 4: "static", 8: "gated", 9: "ra", 10: "mrt",
             11: "zebra", 12: "bird", 13: "dnrouted", 14: "xorp", 15: "ntk", 16: "dhcp", 17: "mrouted",
             18: "keepalived", 42: "babel", 99: "openr", 186: "bgp", 187: "isis", 188: "ospf", 189: "rip",
             192: "eigrp"}
TYPES = {1: "unicast", 2: "local", 3: "broadcast", 4: "anycast", 5: "multicast", 6: "blackhole",
         7: "unreachable", 8: "prohibit", 9: "throw", 10: "nat"}


def fib_match(netns_name: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address
              ) -> tuple[int, int, str, str] | None:
    """The kernel's own route for `address` (RTM_GETROUTE with RTM_F_FIB_MATCH: a trie lookup, no
    dump): (packed prefix, table, type, protocol), or None when it has none to give."""
    family = AF_INET6 if address.version == 6 else AF_INET
    raw = address.packed
    attr = struct.pack("=HH", 4 + len(raw), RTA_DST) + raw
    body = struct.pack("=BBBBBBBBI", family, address.max_prefixlen, 0, 0, 0, 0, 0, 0, RTM_F_FIB_MATCH) + attr
    request = struct.pack("=IHHII", 16 + len(body), RTM_GETROUTE, NLM_F_REQUEST, 1, 0) + body
    with netns.entered(netns_name):
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
    with sock:
        sock.settimeout(FIB_MATCH_TIMEOUT)
        sock.bind((0, 0))
        sock.send(request)
        data = sock.recv(65536)
    return parse_fib_match(data)


def parse_fib_match(data: bytes) -> tuple[int, int, str, str] | None:
    """fib_match's answer from the kernel's reply (None for an error reply)."""
    length, kind = struct.unpack_from("=IH", data, 0)
    if kind == NLMSG_ERROR or kind != RTM_NEWROUTE:
        return None
    family, dst_len, _src, _tos, table, protocol, _scope, rtype, _flags = struct.unpack_from("=BBBBBBBBI", data, 16)
    dst = 0
    pos = 16 + 12
    while pos + 4 <= length:
        alen, atype = struct.unpack_from("=HH", data, pos)
        if alen < 4:
            break
        if atype == RTA_DST:
            dst = int.from_bytes(data[pos + 4:pos + alen], "big")
        elif atype == RTA_TABLE:
            table = struct.unpack_from("=I", data, pos + 4)[0]
        pos += (alen + 3) & ~3
    pk = prefix.pack(6 if family == AF_INET6 else 4, dst, dst_len)
    return pk, table, TYPES.get(rtype, str(rtype)), PROTOCOLS.get(protocol, str(protocol))


def mirrored(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether the mirror holds the routes to `address` (it leaves out what the FIB never carries)."""
    family = AF_INET6 if address.version == 6 else AF_INET
    return not never_in_fib(family, int(address), address.max_prefixlen)
