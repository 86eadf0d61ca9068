"""connection: writes from two threads to one switch connection never interleave, and the relay
writes directly only once os-ken's send thread writes through the lock."""

from __future__ import annotations

import random
import socket
import struct
import threading

import pytest

from taprouter.bridge.ports import SwitchPort
from taprouter.controller.openflow import decode
from taprouter.controller.session import connection, packetin


class Datapath:
    """What connection needs of os-ken's Datapath: its socket, and its queued send."""

    def __init__(self, sock: socket.socket) -> None:
        self.socket = sock
        self.queued: list[bytes] = []

    def send(self, data: bytes) -> bool:
        self.queued.append(data)
        return True

    def close(self) -> None:
        self.queued.append(b"closed")


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
    assert sock.take is None and sock.ended is None  # the datapath was ended, once


@pytest.fixture
def os_ken_conf():
    from os_ken import cfg

    cfg.CONF(args=[], project="os_ken")
    yield cfg.CONF
    for name in ("echo_request_interval", "maximum_unreplied_echo_requests", "socket_timeout"):
        cfg.CONF.clear_override(name)


@pytest.mark.parametrize("how", ["closed", "reset", "silent"])
def test_a_switch_that_goes_away_ends_its_os_ken_datapath_at_once(how, os_ken_conf):
    """os-ken's own Datapath on a TCP connection: when the switch closes it, resets it, or stops
    answering echo requests, the datapath turns DEAD and its serve() returns, though nothing more
    is sent to it. Without `connection.end`, serve() waited in its send thread's queue until the
    next send."""
    from os_ken.controller import controller
    from os_ken.controller.handler import DEAD_DISPATCHER

    if how == "silent":
        os_ken_conf.set_override("echo_request_interval", 0.1)
        os_ken_conf.set_override("maximum_unreplied_echo_requests", 1)
        os_ken_conf.set_override("socket_timeout", 0.2)
    listener = socket.create_server(("127.0.0.1", 0))
    switch = socket.create_connection(listener.getsockname())
    ours, address = listener.accept()
    listener.close()
    dp = controller.Datapath(connection.LockedSocket(ours, aligned=True), address)
    serving = threading.Thread(target=dp.serve, daemon=True)
    serving.start()
    connection.install(dp)
    hello = switch.recv(8)
    assert hello[1] == 0  # OFPT_HELLO: the datapath is up and reading
    if how == "reset":
        switch.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    if how != "silent":
        switch.close()
    serving.join(3)
    assert not serving.is_alive(), "serve() still waits for its send thread"
    assert dp.state == DEAD_DISPATCHER
    switch.close()


# -- PacketIns split out before os-ken's receive loop ------------------------------------------


def mixed_stream(rng: random.Random, count: int) -> tuple[list[bytes], list[bytes], list[bytes]]:
    """(every message in order, those os-ken must get, the PacketIns to be taken). PacketIns
    without an in_port, an OpenFlow 1.0 message of the PacketIn's type number and a message
    claiming a length below 8 (os-ken steps 8 bytes over it) all stay with os-ken."""
    from tests.test_packetin import packet_in  # a PacketIn as a switch sends it

    echoes = openflow_messages(count)
    stream, for_os_ken, taken = [], [], []
    for i in range(count):
        kind = rng.random()
        if kind < 0.5:
            msg = bytes(packet_in({"in_port": rng.randrange(1, 60)}, rng.randbytes(rng.randrange(14, 1600))))
            taken.append(msg)
        elif kind < 0.55:
            msg = bytes(packet_in({"eth_type": 0x0800}, rng.randbytes(60)))  # no in_port: os-ken's to read
            for_os_ken.append(msg)
        elif kind < 0.58:
            msg = b"\x01" + bytes(packet_in({"in_port": 1}, rng.randbytes(60)))[1:]  # OpenFlow 1.0, type 10
            for_os_ken.append(msg)
        elif kind < 0.6:
            msg = struct.pack("!BBHI", 4, 2, 4, i)  # a length below the header's own
            for_os_ken.append(msg)
        else:
            msg = echoes[i]
            for_os_ken.append(msg)
        stream.append(msg)
    return stream, for_os_ken, taken


def frames_taken() -> tuple[list, connection.Take]:
    got = []
    return got, packetin.taker(7, lambda port, frame, reason: got.append((port, frame)))


def as_frames(messages: list[bytes]) -> list:
    out = []
    for msg in messages:
        port, frame, _reason = decode.packet_in(msg)
        out.append((SwitchPort(7, port), frame))
    return out


@pytest.mark.parametrize("seed", range(20))
def test_split_takes_packet_ins_and_keeps_the_rest_whole_wherever_the_reads_end(seed):
    rng = random.Random(seed)
    stream, for_os_ken, taken = mixed_stream(rng, 120)
    data = b"".join(stream)
    got, take = frames_taken()
    kept, held, pos = [], b"", 0
    while pos < len(data):  # reads that end anywhere, one byte to several messages
        step = rng.choice([1, 3, 8, 9, 100, 1500, 9000])
        chunk, pos = data[pos:pos + step], pos + step
        out, held = connection.split(held + chunk, take)
        kept.append(out)
    assert held == b""
    assert b"".join(kept) == b"".join(for_os_ken)
    assert got == as_frames(taken)


def test_an_aligned_socket_hands_os_ken_whole_messages_and_the_taker_the_packet_ins(pair):
    a, b = pair
    stream, for_os_ken, taken = mixed_stream(random.Random(1), 300)
    got, take = frames_taken()
    sock = connection.LockedSocket(a, take, aligned=True)

    def write():  # in pieces that cut messages, with pauses so that reads end inside them
        data, rng = b"".join(stream), random.Random(2)
        for start in range(0, len(data), 7001):
            b.sendall(data[start:start + 7001])
            if rng.random() < 0.3:
                threading.Event().wait(0.002)

    writer = threading.Thread(target=write)
    writer.start()
    messages = read_like_os_ken(sock, len(for_os_ken))
    writer.join()
    assert messages == for_os_ken
    assert got == as_frames(taken)


def test_before_a_taker_is_set_os_ken_gets_the_packet_ins_too(pair):
    a, b = pair
    stream, _, _ = mixed_stream(random.Random(3), 50)
    sock = connection.LockedSocket(a, aligned=True)
    b.sendall(b"".join(stream))
    assert read_like_os_ken(sock, len(stream)) == stream


def test_a_socket_wrapped_mid_stream_only_reads_ahead(pair):
    a, b = pair
    stream, _, _ = mixed_stream(random.Random(4), 50)
    got, take = frames_taken()
    sock = connection.install(Datapath(a), take)
    b.sendall(b"".join(stream))
    assert read_like_os_ken(sock, len(stream)) == stream  # where messages start is unknown to it
    assert got == []


def test_the_taker_leaves_what_it_cannot_read_and_survives_a_failing_relay(caplog):
    from tests.test_packetin import packet_in

    def broken(port, frame, reason):
        raise RuntimeError("a bug in the relay")

    take = packetin.taker(7, broken)
    assert take(bytes(packet_in({"eth_type": 0x0800}, b"x" * 60))) is False
    assert take(bytes(packet_in({"in_port": 3}, b"x" * 60))) is True  # taken, and lost
    assert "could not be relayed" in caplog.text


def test_os_ken_builds_each_datapath_on_a_wrapped_socket_once_wrap_at_birth_ran():
    from os_ken.controller import controller

    original = controller.datapath_connection_factory
    seen = []
    controller.datapath_connection_factory = lambda sock, address: seen.append(sock)
    try:
        connection.wrap_at_birth()
        connection.wrap_at_birth()  # once only
        a, b = socket.socketpair()
        controller.datapath_connection_factory(a, ("127.0.0.1", 1))
        assert len(seen) == 1 and isinstance(seen[0], connection.LockedSocket) and seen[0]._aligned
        assert seen[0]._sock is a
        a.close()
        b.close()
    finally:
        controller.datapath_connection_factory = original
