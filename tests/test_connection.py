"""connection: writes from two threads to one switch connection never interleave, and the relay
writes directly only once os-ken's send thread writes through the lock."""

from __future__ import annotations

import socket
import struct
import threading

import pytest

from taprouter.controller import connection


class Datapath:
    """What connection needs of os-ken's Datapath: its socket, and its queued send."""

    def __init__(self, sock: socket.socket) -> None:
        self.socket = sock
        self.queued: list[bytes] = []

    def send(self, data: bytes) -> bool:
        self.queued.append(data)
        return True


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    a.settimeout(5)  # as os-ken does: non-blocking inside, so a write can be partial
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)  # and big writes are, here
    b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    yield a, b
    a.close()
    b.close()


def frames(sock: socket.socket, count: int) -> list[bytes]:
    """Read `count` length-prefixed frames."""
    out, buf = [], b""
    while len(out) < count:
        buf += sock.recv(1 << 20)
        while len(buf) >= 4 and len(buf) >= 4 + struct.unpack_from("!I", buf)[0]:
            size = struct.unpack_from("!I", buf)[0]
            out.append(buf[4:4 + size])
            buf = buf[4 + size:]
    return out


def test_big_and_small_writes_from_two_threads_arrive_whole(pair):
    a, b = pair
    dp = Datapath(a)
    sock = connection.install(dp)
    big = [struct.pack("!I", 200_000) + bytes([i]) * 200_000 for i in range(20)]  # like reconcile batches
    small = [struct.pack("!I", 60) + bytes([100 + i % 100]) * 60 for i in range(2000)]  # like PacketOuts
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.extend(frames(b, len(big) + len(small))))
    reader.start()
    writers = [threading.Thread(target=lambda: [sock.sendall(m) for m in big]),  # os-ken's send thread
               threading.Thread(target=lambda: [connection.send_now(dp, m) for m in small])]
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    reader.join(10)
    assert sorted(received) == sorted(m[4:] for m in big + small)  # every frame whole: nothing interleaved


def test_the_relay_queues_until_os_kens_thread_has_written_through_the_lock(pair):
    a, b = pair
    dp = Datapath(a)
    connection.install(dp)
    assert connection.send_now(dp, b"first") and dp.queued == [b"first"]  # the send thread may be mid-write
    dp.socket.sendall(b"queued")  # what os-ken's send thread does next, through the wrapper
    assert connection.send_now(dp, b"direct") and dp.queued == [b"first"]
    assert b.recv(100) == b"queueddirect"


def test_install_wraps_once_and_the_rest_of_the_socket_is_the_socket(pair):
    a, _b = pair
    dp = Datapath(a)
    sock = connection.install(dp)
    assert connection.install(dp) is sock
    assert sock.fileno() == a.fileno() and sock.gettimeout() == 5


def test_a_failed_write_closes_the_connection_rather_than_leave_a_broken_stream(pair):
    a, b = pair
    dp = Datapath(a)
    sock = connection.install(dp)
    sock.sendall(b"x")
    b.close()
    with pytest.raises(OSError):
        for _ in range(100):  # the first writes may still be buffered
            a.send(b"y" * 65536)
    assert sock.write_now(b"z") is False
    with pytest.raises(OSError):
        a.send(b"after")  # shut down: os-ken's receive loop ends and the switch reconnects


class Counting:
    """A socket whose recv calls are counted."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.recvs = 0

    def recv(self, size: int) -> bytes:
        self.recvs += 1
        return self.sock.recv(size)


def openflow_messages(count: int) -> list[bytes]:
    """Echo requests of varied sizes, serialised by os-ken."""
    from os_ken.ofproto import ofproto_v1_3_parser as parser

    class _Dp:
        ofproto = parser.ofproto
        ofproto_parser = parser

    out = []
    for i in range(count):
        msg = parser.OFPEchoRequest(_Dp(), data=bytes([i % 256]) * (i * 37 % 3000))
        msg.set_xid(i + 1)
        msg.serialize()
        out.append(bytes(msg.buf))
    return out


def read_like_os_ken(sock, count: int) -> list[bytes]:
    """os-ken's receive loop: a header, then the rest of the message it announces."""
    out = []
    while len(out) < count:
        head = b""
        while len(head) < 8:
            part = sock.recv(8 - len(head))
            assert part, "end of stream in a header"
            head += part
        length = struct.unpack_from("!H", head, 2)[0]
        body = b""
        while len(body) < length - 8:
            part = sock.recv(length - 8 - len(body))
            assert part, "end of stream in a message"
            body += part
        out.append(head + body)
    return out


def test_reads_ahead_and_hands_os_kens_loop_every_message_whole(pair):
    a, b = pair
    counting = Counting(a)
    dp = Datapath(counting)
    sock = connection.install(dp)
    sent = openflow_messages(200)
    writer = threading.Thread(target=lambda: b.sendall(b"".join(sent)))
    writer.start()
    got = read_like_os_ken(sock, len(sent))
    writer.join()
    assert got == sent
    # os-ken alone makes two recvs a message; here queued messages share them.
    assert counting.recvs < len(sent) / 2


def test_a_message_split_between_reads_arrives_whole_and_the_end_of_stream_shows(pair):
    a, b = pair
    sock = connection.install(Datapath(a))
    first, second = openflow_messages(3)[1:3]
    b.sendall(first + second[:5])  # the second's header is cut
    got = [read_like_os_ken(sock, 1)[0]]
    waiting = threading.Timer(0.05, lambda: b.sendall(second[5:]))
    waiting.start()
    got += read_like_os_ken(sock, 1)
    waiting.join()
    assert got == [first, second]
    b.close()
    assert sock.recv(8) == b""
