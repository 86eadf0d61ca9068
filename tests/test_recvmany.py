"""recvmany.Receiver on real datagram sockets: order, boundaries, limits, truncation, errors."""

from __future__ import annotations

import errno
import os
import socket

import pytest

from taprouter.routing import recvmany


@pytest.fixture
def pair():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    yield a, b
    a.close()
    b.close()


def test_nothing_queued_reads_empty_without_blocking(pair):
    _a, b = pair
    assert recvmany.Receiver(slots=4, slot_size=64).read(b) == b""


def test_datagrams_come_back_joined_in_order(pair):
    a, b = pair
    sent = [os.urandom(n) for n in (1, 17, 64, 3, 40)]
    for data in sent:
        a.send(data)
    assert recvmany.Receiver(slots=8, slot_size=64).read(b) == b"".join(sent)
    assert recvmany.Receiver(slots=8, slot_size=64).read(b) == b""


def test_one_call_reads_at_most_its_slots_and_the_rest_stays_queued(pair):
    a, b = pair
    sent = [bytes([i]) * (i + 1) for i in range(10)]
    for data in sent:
        a.send(data)
    receiver = recvmany.Receiver(slots=4, slot_size=16)
    assert receiver.read(b) == b"".join(sent[:4])
    assert receiver.read(b) == b"".join(sent[4:8])
    assert receiver.read(b) == b"".join(sent[8:])
    assert receiver.read(b) == b""


def test_the_buffer_is_reused_but_what_was_returned_is_not_overwritten(pair):
    a, b = pair
    receiver = recvmany.Receiver(slots=2, slot_size=16)
    a.send(b"first")
    first = receiver.read(b)
    a.send(b"second")
    assert receiver.read(b) == b"second"
    assert first == b"first"


def test_a_datagram_larger_than_its_slot_is_reported_not_cut_short(pair):
    a, b = pair
    a.send(b"x" * 8)
    a.send(b"y" * 100)
    with pytest.raises(recvmany.Truncated) as caught:
        recvmany.Receiver(slots=4, slot_size=32).read(b)
    assert caught.value.errno == errno.EMSGSIZE


def resident_kb() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def test_the_default_buffers_are_not_resident_until_written(pair):
    """Every router's watcher holds a default Receiver (128 slots of 64 KB): zero-filled, that
    was 8 MB resident per datapath on one daemon, whether or not a route ever came."""
    a, b = pair
    before = resident_kb()
    receiver = recvmany.Receiver()
    assert resident_kb() - before < 1024, "a new Receiver made its 8 MB of buffers resident"
    for n in range(100):
        a.send(bytes([n]) * 200)
    assert receiver.read(b) == b"".join(bytes([n]) * 200 for n in range(100))
    assert resident_kb() - before < 1024, "100 small datagrams made more than a page per slot resident"


def test_a_socket_error_is_raised_as_oserror():
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.close()
    with pytest.raises(OSError) as caught:
        recvmany.Receiver(slots=2, slot_size=16).read(sock)  # fileno() of a closed socket is -1
    assert caught.value.errno == errno.EBADF


def test_netlink_route_notifications_are_read_in_blocks():
    """A real rtnetlink socket: a route added in a fresh netns arrives through recvmmsg."""
    if os.geteuid() != 0:
        pytest.skip("needs root for a network namespace")
    from taprouter import netns
    from taprouter import prefix
    from taprouter.routing import rtshape
    import secrets
    import subprocess
    name = "tqrm" + secrets.token_hex(3)
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        with netns.entered(name):
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
        with sock:
            sock.bind((0, 0x40))  # RTMGRP_IPV4_ROUTE
            subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
            for n in range(5):
                subprocess.run(["ip", "-n", name, "route", "add", f"192.0.2.{n * 16}/28", "dev", "lo"],
                               check=True)
            events = rtshape.route_events(recvmany.Receiver().read(sock))
        assert events is not None
        added = sorted(str(prefix.to_network(pk)) for pk, _entry, delete in events if not delete)
        assert added == [f"192.0.2.{n * 16}/28" for n in range(5)]
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)
