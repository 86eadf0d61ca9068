"""Relays frames between switch ports and TAPs: one epoll thread reads every TAP."""

from __future__ import annotations

import errno
import logging
import os
import select
import threading
from dataclasses import dataclass, field
from typing import Callable

from . import vlan
from .ports import SwitchPort

LOG = logging.getLogger(__name__)

OFPR_ACTION = 1  # a PacketIn sent by an output-to-controller action: a punt
ETH_HEADER = 14
MIN_FRAME = ETH_HEADER  # anything shorter cannot be Ethernet
READ_SIZE = 65536
BURST = 64  # frames read from one TAP before serving the others
# Counters' kinds of loss. unknown_vlan and double_tagged reach the relay only if the switch let them
# through: its ingress flows drop (and count) them first.
ERRORS = ("runt", "oversize", "unknown_port", "write_errors", "send_dropped", "unknown_vlan", "double_tagged")


@dataclass
class Counters:
    """Per-direction frame counters; plain ints, updated by one thread each."""

    to_tap: int = 0
    to_switch: int = 0
    runt: int = 0
    oversize: int = 0
    unknown_port: int = 0
    write_errors: int = 0
    send_dropped: int = 0
    unknown_vlan: int = 0
    double_tagged: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


# A datapath's PacketOut sender: (switch port, frame) pairs -> whether they were sent.
Send = Callable[[list[tuple[int, bytes]]], bool]


@dataclass
class _Tap:
    fd: int
    port: SwitchPort
    name: str
    mtu: int
    send: Send | None = field(default=None)


class Relay:
    """Owns the TAP fds the daemon uses, and the thread that reads them.

    `send` callbacks (one per datapath) turn a frame into a PacketOut; they are
    None while the switch is disconnected, and frames read then are dropped,
    as a switch port that is unreachable would drop them.
    """

    def __init__(self) -> None:
        self.counters = Counters()
        # Frames written to a TAP, per (dpid, port, PacketIn reason), by os-ken's receive threads; and
        # frames read from a TAP and sent as PacketOuts, per (dpid, port), by the relay thread. Each
        # key is counted by one thread (a switch's connection, or the relay): an int per key.
        self.packet_ins: dict[tuple[int, int, int], int] = {}
        self.packet_outs: dict[tuple[int, int], int] = {}
        # Frames lost, per (dpid, kind): the kinds of Counters' errors, for /metrics' router label.
        self.errors: dict[tuple[int, str], int] = {}
        self._by_fd: dict[int, _Tap] = {}
        self._by_port: dict[SwitchPort, _Tap] = {}
        self._senders: dict[int, Send] = {}  # by datapath id, as attached
        self._lock = threading.Lock()
        self._epoll = select.epoll()
        self._wake_r, self._wake_w = os.pipe()
        self._epoll.register(self._wake_r, select.EPOLLIN)
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="tap-relay", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        os.write(self._wake_w, b"x")
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        with self._lock:
            for tap in self._by_fd.values():
                os.close(tap.fd)
            self._by_fd.clear()
            self._by_port.clear()
        self._epoll.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def add(self, port: SwitchPort, name: str, fd: int, mtu: int) -> None:
        with self._lock:
            old = self._by_port.get(port)
            if old is not None:
                if old.fd == fd:
                    old.mtu = mtu
                    return
                try:
                    self._epoll.unregister(old.fd)
                except OSError:
                    pass
                os.close(old.fd)
                del self._by_fd[old.fd]
            # A port the switch reports once it is connected sends at once, as its others do.
            tap = _Tap(fd, port, name, mtu, self._senders.get(port.dpid))
            self._by_fd[fd] = tap
            self._by_port[port] = tap
            self._epoll.register(fd, select.EPOLLIN)

    def remove(self, port: SwitchPort) -> bool:
        """A port taken out of the config: stop reading its TAP and close our descriptor (the
        holder's copy is the caller's). True if the relay had it."""
        with self._lock:
            tap = self._by_port.pop(port, None)
            if tap is None:
                return False
            try:
                self._epoll.unregister(tap.fd)
            except OSError:
                pass
            os.close(tap.fd)
            del self._by_fd[tap.fd]
            return True

    def fd(self, port: SwitchPort) -> int | None:
        tap = self._by_port.get(port)
        return tap.fd if tap else None

    def attach(self, dpid: int, send: Send | None) -> None:
        """Point a datapath's TAPs, and those added later, at a PacketOut sender, or at None when
        it disconnects."""
        with self._lock:
            if send is None:
                self._senders.pop(dpid, None)
            else:
                self._senders[dpid] = send
            for tap in self._by_fd.values():
                if tap.port.dpid == dpid:
                    tap.send = send

    def counters_of(self, dpid: int) -> dict[str, int]:
        """One datapath's share of `counters` (the relay serves every router's switch): frames to
        its TAPs, to it, and each kind of error. Copies first: the relay's thread writes on."""
        packet_ins, packet_outs, errors = dict(self.packet_ins), dict(self.packet_outs), dict(self.errors)
        return {"to_tap": sum(n for (d, _, _), n in packet_ins.items() if d == dpid),
                "to_switch": sum(n for (d, _), n in packet_outs.items() if d == dpid),
                **{kind: errors.get((dpid, kind), 0) for kind in ERRORS}}

    def to_tap(self, port: SwitchPort, frame: bytes, reason: int = OFPR_ACTION) -> bool:
        """Write a frame from a PacketIn (`port` has vid 0: the switch port it came in on) to its TAP,
        a tagged one to its VLAN's TAP without the tag; bad frames are counted and dropped."""
        shape = vlan.kind(frame)
        if shape is vlan.Kind.TAGGED:
            # The priority bits go with the tag: a TAP carries no skb priority into the kernel.
            tag, frame = vlan.strip(frame)
            port = SwitchPort(port.dpid, port.port, tag.vid)
        elif shape is vlan.Kind.DOUBLE_TAGGED:
            self._lost(port.dpid, "double_tagged")
            return False
        tap = self._by_port.get(port)
        if tap is None:
            self._lost(port.dpid, "unknown_vlan" if port.vid else "unknown_port")
            return False
        if len(frame) < MIN_FRAME:
            self._lost(port.dpid, "runt")
            return False
        if len(frame) > tap.mtu + ETH_HEADER:
            self._lost(port.dpid, "oversize")
            return False
        try:
            os.write(tap.fd, frame)
        except OSError as exc:
            # EIO while the TAP is down, EINVAL for frames the kernel refuses.
            self._lost(port.dpid, "write_errors")
            LOG.debug("write to %s failed: %s", tap.name, exc)
            return False
        self.counters.to_tap += 1
        key = (port.dpid, port.port, reason)
        self.packet_ins[key] = self.packet_ins.get(key, 0) + 1
        return True

    def _lost(self, dpid: int, kind: str, frames: int = 1) -> None:
        setattr(self.counters, kind, getattr(self.counters, kind) + frames)
        key = (dpid, kind)
        self.errors[key] = self.errors.get(key, 0) + frames

    def _forget(self, tap: _Tap) -> None:
        with self._lock:
            if self._by_fd.get(tap.fd) is not tap:
                return
            LOG.warning("TAP %s is gone; the port is set up again when the switch reports it", tap.name)
            try:
                self._epoll.unregister(tap.fd)
            except OSError:
                pass
            os.close(tap.fd)
            del self._by_fd[tap.fd]
            if self._by_port.get(tap.port) is tap:
                del self._by_port[tap.port]

    def _run(self) -> None:
        while not self._stopping:
            try:
                events = self._epoll.poll()
            except InterruptedError:
                continue
            for fd, _ in events:
                if fd == self._wake_r:
                    continue
                tap = self._by_fd.get(fd)
                if tap is not None:
                    self._drain(tap)

    def _drain(self, tap: _Tap) -> None:
        batch: list[tuple[int, bytes]] = []
        port, vid = tap.port.port, tap.port.vid
        for _ in range(BURST):
            try:
                frame = os.read(tap.fd, READ_SIZE)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno in (errno.EBADFD, errno.EBADF):
                    self._forget(tap)  # the TAP was deleted under us: stop polling it
                    break
                LOG.warning("read from %s failed: %s", tap.name, exc)
                break
            if len(frame) < MIN_FRAME:
                self._lost(tap.port.dpid, "runt")
                continue
            batch.append((port, vlan.push(frame, vid) if vid else frame))
        if batch:
            self._send(tap, batch)

    def _send(self, tap: _Tap, batch: list[tuple[int, bytes]]) -> None:
        """What one drain read, as PacketOuts in one write: one hand-over to the OpenFlow
        connection per burst rather than per frame."""
        send = tap.send
        try:
            sent = send is not None and send(batch)
        except Exception:  # one bad frame must not stop the relay for every port
            LOG.exception("sending frames from %s failed", tap.name)
            sent = False
        if sent:
            self.counters.to_switch += len(batch)
            key = (tap.port.dpid, tap.port.port)
            self.packet_outs[key] = self.packet_outs.get(key, 0) + len(batch)
        else:
            self._lost(tap.port.dpid, "send_dropped", len(batch))
