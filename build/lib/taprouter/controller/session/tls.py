"""Switches connecting over TLS: the context, the handshake, and a stream two threads can use.

Open vSwitch reads an OpenFlow stream one message at a time: a recv for the 8-byte header and
one for the rest. Over TCP that is two system calls for every flow_mod. Over TLS it reads whole
records (up to 16 KB, a hundred or more route flow_mods) and parses the messages out of them.
Loading 1M routes into Open vSwitch 3.1 here (three alternating pairs), its CPU per route was
6.9-7.7 µs over TLS against 7.3-11.5 µs over TCP; its system time 1.8-1.9 µs against 3.2-4.9.

The TLS session runs on memory buffers (ssl.MemoryBIO), not on an SSLSocket, for two reasons.
The TCP socket is read 64 KB at a time and every whole record in that is decrypted at once, as
the wrapper in connection.py does over TCP; an SSLSocket reads one record per call, two system
calls each, and Open vSwitch sends each PacketIn as a record of its own: with it, the punt path
carried 36,000 BGP-class pps where TCP carried 69,500. And os-ken reads a switch's socket on one
thread while others write it (its send thread, the relay's PacketOuts, the route sender), but one
OpenSSL connection must not be in two calls at once: here each call into it takes one lock, for
that call alone, while the socket itself is read and written outside it. A writer keeps a second
lock from encrypting to sending, so that records go out in the order they were made.
"""

from __future__ import annotations

import logging
import re
import socket
import ssl
import threading
from pathlib import Path

from ...config import TlsConfig

LOG = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT = 10.0  # seconds a switch may stay silent during its TLS handshake
READ = 65536  # bytes asked of the socket per recv
PEEK_TIMEOUT = 5.0  # seconds to wait for a switch's first bytes, to tell TLS from OpenFlow
_CERTIFICATE = re.compile(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", re.DOTALL)
_PRIVATE_KEY = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")


class TlsError(Exception):
    """The TLS files cannot be used; the message says which one and why, and `which` is its key
    under openflow.tls: "key", "cert" or "ca"."""

    def __init__(self, which: str, message: str):
        super().__init__(message)
        self.which = which


def context(files: TlsConfig) -> ssl.SSLContext:
    """A server context for switches: TLS 1.2 or later, our certificate, and the switches'
    certificates required and checked when a CA is given."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    # OpenSSL's error for a bad certificate or key names neither ("PEM lib"): look at each file
    # first, so that the message can name the one that is wrong.
    _certificates("cert", files.cert, "certificate")
    key = _read("key", files.key)
    if not _PRIVATE_KEY.search(key):
        raise TlsError("key", f"{files.key} holds no PEM private key")
    if "ENCRYPTED" in key:  # OpenSSL would ask for its passphrase on the terminal
        raise TlsError("key", f"{files.key} is an encrypted private key; taprouter needs it unencrypted")
    try:
        ctx.load_cert_chain(str(files.cert), str(files.key))
    except ssl.SSLError as exc:
        if exc.reason in ("KEY_VALUES_MISMATCH", "NO_CERTIFICATE_ASSIGNED"):
            raise TlsError("key", f"{files.key} is not the private key of {files.cert}") from None
        raise TlsError("key", f"{files.key} is not a usable PEM private key ({exc.reason or exc})") from None
    except OSError as exc:
        raise TlsError("key", f"cannot read {files.key}: {exc.strerror or exc}") from None
    if files.ca is not None:
        _certificates("ca", files.ca, "CA certificate")
        try:
            ctx.load_verify_locations(cafile=str(files.ca))
        except (ssl.SSLError, OSError) as exc:
            raise TlsError("ca", f"cannot load {files.ca} as PEM CA certificates: "
                                 f"{getattr(exc, 'reason', None) or exc}") from None
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _read(which: str, path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError as exc:
        raise TlsError(which, f"cannot read {path}: {exc.strerror or exc}") from None


def _certificates(which: str, path: Path, what: str) -> None:
    """Raise TlsError unless the file holds certificates that OpenSSL can read."""
    blocks = _CERTIFICATE.findall(_read(which, path))
    if not blocks:
        raise TlsError(which, f"{path} holds no PEM {what}")
    try:
        ssl.create_default_context(cadata="\n".join(blocks))
    except ssl.SSLError as exc:
        raise TlsError(which, f"{path} holds a PEM {what} that OpenSSL cannot read "
                              f"({exc.reason or exc})") from None


def accept(ctx: ssl.SSLContext, sock: socket.socket, address) -> TlsStream | None:
    """Complete the handshake with a switch that connected; None (logged, socket closed) if it
    fails or the switch sends nothing for HANDSHAKE_TIMEOUT."""
    sock.settimeout(HANDSHAKE_TIMEOUT)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_side=True)
    try:
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                _send(sock, outgoing)
                data = sock.recv(READ)
                if not data:
                    raise ConnectionAbortedError("it closed the connection") from None
                incoming.write(data)
        _send(sock, outgoing)  # our last flight
    except (OSError, ValueError) as exc:
        try:
            _send(sock, outgoing)  # the alert that says why, if there is one
        except OSError:
            pass
        reason = getattr(exc, "reason", None) or exc
        LOG.warning("switch at %s: TLS handshake failed (%s); connection closed", peer(address), reason)
        sock.close()
        return None
    return TlsStream(sock, tls, incoming, outgoing)


def _send(sock: socket.socket, outgoing: ssl.MemoryBIO) -> None:
    data = outgoing.read()
    if data:
        sock.sendall(data)


def peer(address) -> str:
    """A switch's socket address as HOST:PORT ([HOST]:PORT for IPv6)."""
    if isinstance(address, tuple) and len(address) >= 2:
        host = str(address[0])
        return f"[{host}]:{address[1]}" if ":" in host else f"{host}:{address[1]}"
    return str(address)


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
    """A TLS session over a TCP socket that one thread may read while others write (see the
    module's docstring). It behaves like the socket: recv and sendall honour `settimeout` and
    raise socket.timeout. The end of the stream is b"" from recv; a broken session is a
    ConnectionError, never an ssl.SSLError, which os-ken's receive loop would retry forever."""

    def __init__(self, sock: socket.socket, tls: ssl.SSLObject, incoming: ssl.MemoryBIO,
                 outgoing: ssl.MemoryBIO) -> None:
        self._sock = sock
        self._tls = tls
        self._incoming = incoming
        self._outgoing = outgoing
        self._call = threading.Lock()  # held for each call into OpenSSL, never for socket I/O
        self._write = threading.Lock()  # held from encrypting a sendall's data to sending it
        self._ended = False  # the session or the TCP stream under it has ended

    def settimeout(self, timeout: float | None) -> None:
        self._sock.settimeout(timeout)

    def gettimeout(self) -> float | None:
        return self._sock.gettimeout()

    def fileno(self) -> int:
        return self._sock.fileno()

    def setsockopt(self, *args) -> None:
        self._sock.setsockopt(*args)

    def getpeername(self):
        return self._sock.getpeername()

    def recv(self, size: int) -> bytes:
        """Up to `size` bytes: whatever whole records are already here, decrypted, else what the
        next read of the socket brings."""
        while True:
            with self._call:
                data = self._decrypt(size)
                reply = self._outgoing.pending  # the session may answer what it read
            if reply:
                self._reply()
            if data or self._ended:
                return data
            raw = self._sock.recv(READ)
            with self._call:
                if raw:
                    self._incoming.write(raw)
                else:
                    self._incoming.write_eof()

    def _decrypt(self, size: int) -> bytes:
        chunks, have = [], 0
        while have < size and not self._ended:
            try:
                chunk = self._tls.read(size - have)
            except ssl.SSLWantReadError:
                break
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                chunk = b""  # closed, with or without the switch's close_notify
            except ssl.SSLError as exc:
                raise ConnectionError(f"TLS: {exc.reason or exc}") from None
            if not chunk:
                self._ended = True
                break
            chunks.append(chunk)
            have += len(chunk)
        return b"".join(chunks)

    def _reply(self) -> None:
        """Send what reading made the session write, unless a writer is at work: it sends all
        that is pending once it holds the lock, and waiting for it here could wait for the
        switch, which may be waiting for us to read."""
        if self._write.acquire(blocking=False):
            try:
                with self._call:
                    data = self._outgoing.read()
                if data:
                    self._sock.sendall(data)
            finally:
                self._write.release()

    def sendall(self, data, flags: int = 0) -> None:
        view = memoryview(data).cast("B")
        with self._write:
            with self._call:
                try:
                    while view:
                        view = view[self._tls.write(view):]
                except ssl.SSLError as exc:
                    raise ConnectionError(f"TLS: {exc.reason or exc}") from None
                encrypted = self._outgoing.read()
            self._sock.sendall(encrypted)

    def shutdown(self, how: int) -> None:
        self._sock.shutdown(how)

    def close(self) -> None:
        self._sock.close()
