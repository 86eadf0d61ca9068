"""The switch connection's socket, wrapped: PacketOuts written at once from the relay thread,
past os-ken's send queue; the switch's messages read many to a recv; PacketIns taken out of
the stream before os-ken's receive loop.

os-ken queues every message for its datapath's send thread. For a frame the
kernel sends out of a TAP, that hand-over (a queue and a thread woken) is a
large part of the punt path, so the relay writes PacketOuts itself
(docs/performance.md has the figures).

Two threads writing one TCP stream must not interleave, and a write can be
partial (os-ken's sockets have a timeout, so they are non-blocking inside).
So the datapath's socket is wrapped: every `sendall`, os-ken's own included,
takes one lock. The relay writes directly only once os-ken's send thread has
written through the wrapper, i.e. once no write it began on the bare socket
can still be under way.

Reads go through the wrapper too. os-ken's receive loop asks the socket for a
message's 8-byte header and then for its rest, a poll and a recv each time. Read
ahead, one recv serves every message queued: under the data-plane benchmark's
BGP-class flood that took what arrives at 50,000 pps offered from 36,050 to 49,600.

Even so, a quarter of the daemon's time under that flood went to os-ken's loop
around each PacketIn (its recv calls, buffer joins, header and dispatch calls).
So once a switch is up, PacketIns are split out of what is read ahead and written
to their TAPs there; os-ken gets the other messages, whole.
That needs the wrapper from the connection's first byte, to know where messages start:
`wrap_at_birth` has os-ken build every Datapath on a wrapped socket.
"""

from __future__ import annotations

import logging
import socket
import ssl
import struct
import threading
from typing import Callable

from os_ken.base import app_manager  # noqa: F401  (first: os-ken's controller module needs it loaded)
from os_ken.controller import controller

from . import tls

LOG = logging.getLogger(__name__)

READ_AHEAD = 65536  # bytes asked of the socket per recv
HEADER = 8  # an OpenFlow header: version, type, length, xid
OFP13, OFPT_PACKET_IN = 4, 10
_LENGTH = struct.Struct("!2xH")

# Offered each whole PacketIn message; True if it took it (os-ken then never sees it).
Take = Callable[[bytes], bool]


class LockedSocket:
    """A datapath's socket whose writes all take one lock and whose reads read ahead; anything
    else goes to the socket.

    A wrapper made with the datapath (`aligned`: it has seen the stream from its first byte)
    knows where messages start. It hands os-ken whole messages only, and offers each whole
    PacketIn to `take` first: those taken never reach os-ken (no header and body recv, no
    parser call through two dispatch tables). One made later, mid-stream, only reads ahead.
    """

    def __init__(self, sock: socket.socket, take: Take | None = None, aligned: bool = False) -> None:
        self._sock = sock
        self.lock = threading.Lock()
        self.ready = False  # os-ken's send thread has written through us
        self._ahead = b""  # read from the socket, not yet handed to os-ken's receive loop
        self._at = 0
        self.take = take
        self._aligned = aligned
        self._held = b""  # the start of a message not yet whole (when aligned)
        self.ended: Callable[[], None] | None = None  # called once when the stream ends or breaks

    def recv(self, size: int) -> bytes:
        """os-ken's receive loop asks for a header, then for the rest of the message, and each
        ask is a poll and a recv. Reading ahead serves both, and every message already queued
        behind them, from one recv."""
        if self._at >= len(self._ahead):
            data = self._read(max(size, READ_AHEAD))
            if len(data) <= size:
                return data
            self._ahead, self._at = data, 0
        start = self._at
        self._at = end = min(start + size, len(self._ahead))
        return self._ahead[start:end]

    def _read(self, size: int) -> bytes:
        if not self._aligned:
            return self._recv(size)
        while True:
            data = self._recv(size)
            if not data:
                return data  # the end of the stream: an unfinished message goes with it
            data, self._held = split(self._held + data if self._held else data, self.take or _keep)
            if data:
                return data

    def _recv(self, size: int) -> bytes:
        try:
            data = self._sock.recv(size)
        except socket.timeout:
            raise  # os-ken's sockets time out while idle; its loop asks again
        except OSError:
            self._end()
            raise
        if not data:
            self._end()
        return data

    def _end(self) -> None:
        ended, self.ended = self.ended, None
        if ended is not None:
            ended()

    def close(self) -> None:
        """os-ken closes the socket when its receive loop ends, for any reason (its echo requests
        unanswered, too, where no read ever failed): the datapath ends with it."""
        self._end()
        self._sock.close()

    def sendall(self, data, *args) -> None:
        with self.lock:
            self.ready = True
            self._sock.sendall(data, *args)

    def write_now(self, data: bytes) -> bool:
        """Write from this thread; False (and the connection closed) if the write failed, as it
        may have been partial and the stream is then beyond repair."""
        try:
            with self.lock:
                self._sock.sendall(data)
        except OSError as exc:
            LOG.warning("writing to the switch failed (%s); closing the connection", exc)
            try:
                self._sock.shutdown(socket.SHUT_RDWR)  # os-ken's receive loop ends; the switch reconnects
            except OSError:
                pass
            return False
        return True

    @property
    def over_tls(self) -> bool:
        return isinstance(self._sock, tls.TlsStream)

    def __getattr__(self, name: str):
        return getattr(self._sock, name)


def split(data: bytes, take: Take) -> tuple[bytes, bytes]:
    """(the whole messages at the start of `data` that `take` did not take, joined; the
    unfinished message after them). Message boundaries are os-ken's: the header's length, and
    8 for a length below 8, which os-ken logs and steps over."""
    kept, start, pos, end = [], 0, 0, len(data)
    while pos + HEADER <= end:
        length = max(HEADER, _LENGTH.unpack_from(data, pos)[0])
        if pos + length > end:
            break
        if data[pos + 1] == OFPT_PACKET_IN and data[pos] == OFP13 and take(data[pos:pos + length]):
            if pos > start:
                kept.append(data[start:pos])
            start = pos + length
        pos += length
    if pos > start:
        kept.append(data[start:pos])
    return b"".join(kept), data[pos:]


def _keep(_message: bytes) -> bool:
    return False


def install(dp, take: Take | None = None) -> LockedSocket:
    """Wrap the datapath's socket if it is not yet (the wrapper is used from the next read and
    write on), offer it PacketIns from now on, and end the datapath when its stream ends."""
    if not isinstance(dp.socket, LockedSocket):
        dp.socket = LockedSocket(dp.socket)
    dp.socket.take = take
    dp.socket.ended = lambda: end(dp)
    return dp.socket


def end(dp) -> None:
    """The switch closed the connection or it broke: tell os-ken at once.

    Its receive loop ends by itself, but serve() then waits for the send thread, which sits in
    its queue until something is sent (with native threads, os-ken's hub cannot kill one); only
    then is the datapath DEAD. A switch that went quiet was found gone whenever the next flow_mod
    was sent, and its threads stayed until then. So: DEAD now, and an empty send to wake the send
    thread, which sees DEAD and ends.
    """
    dp.close()
    dp.send(b"")


def wrap_at_birth(tls_context: ssl.SSLContext | None = None) -> None:
    """Have os-ken wrap each switch's socket before its Datapath reads a byte, so that the
    wrapper can tell where messages start. Every Datapath is built by the module function
    `datapath_connection_factory`, which os-ken's servers and clients look up by name.

    With a TLS context, os-ken listens on plain TCP and the handshake happens here: a switch that
    fails it is logged with its address and never becomes a Datapath (see tls.py)."""
    factory = controller.datapath_connection_factory
    if getattr(factory, "wraps", None) is not None:
        return

    def wrapping_factory(sock, address):
        if tls_context is not None:
            sock = tls.accept(tls_context, sock, address)
            if sock is None:
                return None
        elif tls.speaks_tls(sock):
            LOG.warning("switch at %s: it speaks TLS, but openflow.tls is not configured; connection "
                        "closed", tls.peer(address))
            sock.close()
            return None
        return factory(LockedSocket(sock, aligned=True), address)

    wrapping_factory.wraps = factory
    controller.datapath_connection_factory = wrapping_factory


def send_now(dp, data: bytes) -> bool:
    """Write `data` to the switch from this thread if that is safe yet, else queue it in os-ken."""
    sock = dp.socket
    if isinstance(sock, LockedSocket) and sock.ready:
        return sock.write_now(data)
    return dp.send(data)
