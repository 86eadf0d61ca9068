"""PacketOuts written to the switch at once, from the relay thread, past os-ken's send queue.

os-ken queues every message for its datapath's send thread. For a frame the
kernel sends out of a TAP that hand-over was a large part of the punt path:
with the relay writing itself, the ping RTT to the router (p50) went from
0.56-0.73 ms to 0.53-0.56 ms (three short runs each on this machine; L2 on
the same bridge 0.12-0.18 ms).

Two threads writing one TCP stream must not interleave, and a write can be
partial (os-ken's sockets have a timeout, so they are non-blocking inside).
So the datapath's socket is wrapped: every `sendall`, os-ken's own included,
takes one lock. The relay writes directly only once os-ken's send thread has
written through the wrapper, i.e. once no write it began on the bare socket
can still be under way.
"""

from __future__ import annotations

import logging
import socket
import threading

LOG = logging.getLogger(__name__)


class LockedSocket:
    """A datapath's socket whose writes all take one lock; anything else goes to the socket."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.lock = threading.Lock()
        self.ready = False  # os-ken's send thread has written through us

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

    def __getattr__(self, name: str):
        return getattr(self._sock, name)


def install(dp) -> LockedSocket:
    """Wrap the datapath's socket (once); the wrapper is used from the next write on."""
    if not isinstance(dp.socket, LockedSocket):
        dp.socket = LockedSocket(dp.socket)
    return dp.socket


def send_now(dp, data: bytes) -> bool:
    """Write `data` to the switch from this thread if that is safe yet, else queue it in os-ken."""
    sock = dp.socket
    if isinstance(sock, LockedSocket) and sock.ready:
        return sock.write_now(data)
    return dp.send(data)
