"""Switches connecting over TLS: the context, the handshake, and a stream two threads can use.

Open vSwitch reads an OpenFlow stream one message at a time: a recv for the 8-byte header and
one for the rest. Over TCP that is two system calls for every flow_mod. Over TLS it reads whole
records (up to 16 KB, a hundred or more route flow_mods) and parses the messages out of them.
Loading 1M routes into Open vSwitch 3.1 here (three alternating pairs), its CPU per route was
6.9-7.7 µs over TLS against 7.3-11.5 µs over TCP; its system time 1.8-1.9 µs against 3.2-4.9.

os-ken reads a switch's socket on one thread while others write it (its send thread, the
relay's PacketOuts, the route sender). A TCP socket allows that; an OpenSSL connection does
not: one SSL object must not be in two calls at once. So the TLS socket is non-blocking, every
call on it takes one lock for that call alone, and waiting (for data, or for room to write)
happens outside that lock. A writer keeps a second lock for a whole message, so that writes do
not interleave and a write OpenSSL asked to repeat is repeated first.
"""

from __future__ import annotations

import logging
import select
import socket
import ssl
import threading
import time

from ..config import TlsConfig

LOG = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT = 10.0  # seconds a connecting switch has to complete its TLS handshake
PEEK_TIMEOUT = 5.0  # seconds to wait for a switch's first bytes, to tell TLS from OpenFlow


class TlsError(Exception):
    """The TLS files cannot be used; the message says which one and why."""


def context(files: TlsConfig) -> ssl.SSLContext:
    """A server context for switches: TLS 1.2 or later, our certificate, and the switches'
    certificates required and checked when a CA is given."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(str(files.cert), str(files.key))
    except ssl.SSLError as exc:
        if exc.reason in ("KEY_VALUES_MISMATCH", "NO_CERTIFICATE_ASSIGNED"):
            raise TlsError(f"{files.key} is not the private key of {files.cert}") from None
        raise TlsError(f"{files.cert} and {files.key} are not a PEM certificate and its private "
                       f"key ({exc.reason or exc})") from None
    except OSError as exc:
        raise TlsError(f"cannot read {files.cert} or {files.key}: {exc.strerror or exc}") from None
    if files.ca is not None:
        try:
            ctx.load_verify_locations(cafile=str(files.ca))
        except (ssl.SSLError, OSError) as exc:
            raise TlsError(f"cannot load {files.ca} as PEM CA certificates: "
                           f"{getattr(exc, 'reason', None) or exc}") from None
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def accept(ctx: ssl.SSLContext, sock: socket.socket, address) -> TlsStream | None:
    """Complete the handshake with a switch that connected; None (logged, socket closed) if it
    fails or takes longer than HANDSHAKE_TIMEOUT."""
    sock.settimeout(HANDSHAKE_TIMEOUT)
    try:
        tls = ctx.wrap_socket(sock, server_side=True)
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        LOG.warning("switch at %s: TLS handshake failed (%s); connection closed", peer(address), reason)
        sock.close()
        return None
    return TlsStream(tls)


def peer(address) -> str:
    return f"{address[0]}:{address[1]}" if isinstance(address, tuple) and len(address) >= 2 else str(address)


def speaks_tls(sock: socket.socket) -> bool:
    """Whether a switch that connected opens with a TLS handshake record (0x16 0x03) rather than
    an OpenFlow message (whose first byte is its version, 1 to 6). Both sides of OpenFlow send
    first, so its first bytes come at once; one that sends nothing is taken as OpenFlow."""
    sock.settimeout(PEEK_TIMEOUT)
    try:
        return sock.recv(2, socket.MSG_PEEK) == b"\x16\x03"
    except OSError:
        return False
    finally:
        sock.settimeout(None)


class TlsStream:
    """An SSLSocket that one thread may read while others write (see the module's docstring).

    It behaves like a socket with a timeout: recv and sendall wait up to `settimeout`'s value
    and raise socket.timeout after it. The end of the stream is b"" from recv; any TLS failure is
    a ConnectionError, never an ssl.SSLError, which os-ken's receive loop would retry forever.
    """

    def __init__(self, sock: ssl.SSLSocket) -> None:
        self._sock = sock
        self._call = threading.Lock()  # held for each call into OpenSSL, never while waiting
        self._write = threading.Lock()  # held for a whole sendall
        self._timeout: float | None = None
        sock.setblocking(False)

    def settimeout(self, timeout: float | None) -> None:
        self._timeout = timeout

    def gettimeout(self) -> float | None:
        return self._timeout

    def fileno(self) -> int:
        return self._sock.fileno()

    def setsockopt(self, *args) -> None:
        self._sock.setsockopt(*args)

    def getpeername(self):
        return self._sock.getpeername()

    def recv(self, size: int) -> bytes:
        deadline = self._deadline()
        while True:
            with self._call:
                try:
                    return self._sock.recv(size)
                except ssl.SSLWantReadError:
                    want_write = False
                except ssl.SSLWantWriteError:
                    want_write = True
                except ssl.SSLZeroReturnError:
                    return b""  # the switch closed the TLS session
                except ssl.SSLError as exc:
                    raise ConnectionError(f"TLS: {exc.reason or exc}") from None
            self._wait(want_write, deadline)

    def sendall(self, data, flags: int = 0) -> None:
        view = memoryview(data).cast("B")
        with self._write:
            deadline = self._deadline()
            while view:
                with self._call:
                    try:
                        view = view[self._sock.send(view):]
                        continue
                    except ssl.SSLWantWriteError:
                        want_write = True
                    except ssl.SSLWantReadError:
                        want_write = False
                    except ssl.SSLError as exc:
                        raise ConnectionError(f"TLS: {exc.reason or exc}") from None
                self._wait(want_write, deadline)

    def shutdown(self, how: int) -> None:
        """Shut the TCP connection down under the TLS session. SSLSocket.shutdown would also
        drop the session, after which recv returns raw ciphertext."""
        with self._call:
            socket.socket.shutdown(self._sock, how)

    def close(self) -> None:
        with self._call:
            self._sock.close()

    def _deadline(self) -> float | None:
        return None if self._timeout is None else time.monotonic() + self._timeout

    def _wait(self, want_write: bool, deadline: float | None) -> None:
        fd = self._sock.fileno()
        if fd < 0:
            raise ConnectionAbortedError("the TLS connection is closed")
        poller = select.poll()
        poller.register(fd, select.POLLOUT if want_write else select.POLLIN)
        left = None if deadline is None else max(0.0, deadline - time.monotonic()) * 1000
        if not poller.poll(left):
            raise socket.timeout("timed out")
