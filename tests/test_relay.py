"""The TAP relay's framing and counting, with datagram socketpairs standing in for TAP descriptors."""

from __future__ import annotations

import os
import queue
import socket
import time
from typing import Callable, Iterator

import pytest

from taprouter.bridge.relay import ETH_HEADER, Counters, Relay
from taprouter.bridge.ports import SwitchPort

TIMEOUT = 5.0


def frame(size: int, tag: int = 0) -> bytes:
    head = bytes.fromhex("0e0000000101" "020000000010" "0800")
    body = bytes((tag + i) & 0xFF for i in range(max(0, size - len(head))))
    return (head + body)[:size]


def wait_until(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.002)
    return predicate()


class Recorder:
    """A PacketOut sender stand-in: records (port, frame) and answers as a connected switch would."""

    def __init__(self, accept: bool = True):
        self.accept = accept
        self.frames: queue.Queue[tuple[int, bytes]] = queue.Queue()
        self.batches: list[int] = []  # frames per call

    def __call__(self, frames: list[tuple[int, bytes]]) -> bool:
        self.batches.append(len(frames))
        for port, data in frames:
            self.frames.put((port, data))
        return self.accept

    def get(self, timeout: float = TIMEOUT) -> tuple[int, bytes]:
        return self.frames.get(timeout=timeout)


class Harness:
    def __init__(self) -> None:
        self.relay = Relay()
        self.peers: list[socket.socket] = []

    def tap(self, dpid: int, port: int, mtu: int = 1500, name: str | None = None, vid: int = 0) -> socket.socket:
        """A TAP stand-in: the relay gets one end, non-blocking as open_tap makes it; the test the other."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        theirs.settimeout(TIMEOUT)
        fd = ours.detach()
        os.set_blocking(fd, False)
        self.relay.add(SwitchPort(dpid, port, vid), name or f"t{dpid}-{port}.{vid}", fd, mtu)
        self.peers.append(theirs)
        return theirs

    def close(self) -> None:
        # Stop first: a closed peer would make the relay's end readable forever.
        self.relay.stop()
        for peer in self.peers:
            peer.close()


@pytest.fixture
def h() -> Iterator[Harness]:
    harness = Harness()
    harness.relay.start()
    try:
        yield harness
    finally:
        harness.close()


def counts(relay: Relay) -> dict[str, int]:
    return {k: v for k, v in relay.counters.as_dict().items() if v}


def nothing_pending(peer: socket.socket) -> bool:
    peer.setblocking(False)
    try:
        peer.recv(65536)
    except BlockingIOError:
        return True
    finally:
        peer.settimeout(TIMEOUT)
    return False


# --- switch -> TAP ---------------------------------------------------------------------------------


def test_good_frame_is_written_and_counted(h):
    peer = h.tap(1, 1)
    data = frame(60, tag=7)
    assert h.relay.to_tap(SwitchPort(1, 1), data) is True
    assert peer.recv(65536) == data
    assert counts(h.relay) == {"to_tap": 1}


@pytest.mark.parametrize("where", [SwitchPort(1, 2), SwitchPort(2, 1), SwitchPort(0, 0)])
def test_unknown_port_is_counted_not_written(h, where):
    peer = h.tap(1, 1)
    assert h.relay.to_tap(where, frame(60)) is False
    assert counts(h.relay) == {"unknown_port": 1}
    assert nothing_pending(peer)


@pytest.mark.parametrize("size", [0, 1, 5, ETH_HEADER - 1])
def test_runt_is_counted_not_written(h, size):
    peer = h.tap(1, 1)
    assert h.relay.to_tap(SwitchPort(1, 1), frame(size)) is False
    assert counts(h.relay) == {"runt": 1}
    assert nothing_pending(peer)


@pytest.mark.parametrize("mtu", [1500, 9000, 68])
def test_oversize_is_counted_and_mtu_plus_header_is_not(h, mtu):
    peer = h.tap(1, 1, mtu=mtu)
    assert h.relay.to_tap(SwitchPort(1, 1), frame(mtu + ETH_HEADER + 1)) is False
    assert counts(h.relay) == {"oversize": 1}
    assert nothing_pending(peer)
    largest = frame(mtu + ETH_HEADER, tag=3)
    assert h.relay.to_tap(SwitchPort(1, 1), largest) is True
    assert peer.recv(65536) == largest
    assert counts(h.relay) == {"oversize": 1, "to_tap": 1}


def test_smallest_frame_is_written(h):
    peer = h.tap(1, 1)
    assert h.relay.to_tap(SwitchPort(1, 1), frame(ETH_HEADER)) is True
    assert peer.recv(65536) == frame(ETH_HEADER)


def test_frames_go_to_the_right_tap(h):
    peers = {(d, p): h.tap(d, p) for d in (1, 2) for p in (1, 2, 3)}
    for i, (d, p) in enumerate(sorted(peers)):
        assert h.relay.to_tap(SwitchPort(d, p), frame(64, tag=i))
    for i, key in enumerate(sorted(peers)):
        assert peers[key].recv(65536) == frame(64, tag=i)
        assert nothing_pending(peers[key])
    assert counts(h.relay) == {"to_tap": 6}


def test_full_tap_queue_counts_write_errors(h):
    peer = h.tap(1, 1)
    written = 0
    for _ in range(100_000):
        if not h.relay.to_tap(SwitchPort(1, 1), frame(1514)):
            break
        written += 1
    else:
        pytest.fail("the TAP stand-in never filled up")
    assert counts(h.relay) == {"to_tap": written, "write_errors": 1}
    peer.recv(65536)  # room again: the next frame goes through
    assert h.relay.to_tap(SwitchPort(1, 1), frame(60))


def test_mtu_update_with_the_same_fd(h):
    h.tap(1, 1, mtu=1500)
    fd = h.relay.fd(SwitchPort(1, 1))
    assert h.relay.to_tap(SwitchPort(1, 1), frame(9014)) is False
    h.relay.add(SwitchPort(1, 1), "t1-1", fd, 9000)
    assert h.relay.fd(SwitchPort(1, 1)) == fd
    assert h.relay.to_tap(SwitchPort(1, 1), frame(9014)) is True
    assert h.peers[0].recv(65536) == frame(9014)


# --- TAP -> switch ---------------------------------------------------------------------------------


def test_frame_from_tap_reaches_the_sender_with_its_port(h):
    peers = {p: h.tap(7, p) for p in (1, 2, 48)}
    rec = Recorder()
    h.relay.attach(7, rec)
    for p in (48, 1, 2):
        peers[p].send(frame(100, tag=p))
        assert rec.get() == (p, frame(100, tag=p))
    assert wait_until(lambda: counts(h.relay) == {"to_switch": 3}), counts(h.relay)


def test_no_sender_attached_counts_send_dropped(h):
    peer = h.tap(1, 1)
    for i in range(3):
        peer.send(frame(60, tag=i))
    assert wait_until(lambda: h.relay.counters.send_dropped == 3), counts(h.relay)
    assert counts(h.relay) == {"send_dropped": 3}


def test_sender_refusing_counts_send_dropped(h):
    peer = h.tap(1, 1)
    rec = Recorder(accept=False)
    h.relay.attach(1, rec)
    peer.send(frame(60))
    assert rec.get() == (1, frame(60))
    assert wait_until(lambda: h.relay.counters.send_dropped == 1), counts(h.relay)
    assert counts(h.relay) == {"send_dropped": 1}


def test_attach_is_per_datapath_and_detach_drops(h):
    a, b = h.tap(1, 5), h.tap(2, 5)
    rec = Recorder()
    h.relay.attach(1, rec)
    b.send(frame(60, tag=2))
    assert wait_until(lambda: h.relay.counters.send_dropped == 1)
    a.send(frame(60, tag=1))
    assert rec.get() == (5, frame(60, tag=1))
    rec2 = Recorder()
    h.relay.attach(2, rec2)
    b.send(frame(60, tag=3))
    assert rec2.get() == (5, frame(60, tag=3))
    h.relay.attach(1, None)  # the switch disconnected
    a.send(frame(60, tag=4))
    assert wait_until(lambda: h.relay.counters.send_dropped == 2)
    assert rec.frames.empty() and rec2.frames.empty()
    assert h.relay.counters.to_switch == 2


def test_each_datapath_counts_its_own_frames(h):
    """Routers share the relay; a router's status shows its own switch's frames, not every one's."""
    a, b = h.tap(1, 5), h.tap(2, 5)
    h.relay.attach(1, Recorder())
    assert h.relay.to_tap(SwitchPort(1, 5), frame(60)) and h.relay.to_tap(SwitchPort(1, 5), frame(60))
    assert h.relay.to_tap(SwitchPort(2, 5), frame(60))
    assert not h.relay.to_tap(SwitchPort(2, 9), frame(60))
    a.send(frame(60))
    b.send(frame(60))  # no sender attached for datapath 2
    assert wait_until(lambda: h.relay.counters.to_switch == 1 and h.relay.counters.send_dropped == 1)
    zero = dict.fromkeys(("runt", "oversize", "unknown_port", "write_errors", "send_dropped", "unknown_vlan",
                          "double_tagged"), 0)
    assert h.relay.counters_of(1) == {**zero, "to_tap": 2, "to_switch": 1}
    assert h.relay.counters_of(2) == {**zero, "to_tap": 1, "to_switch": 0, "unknown_port": 1, "send_dropped": 1}
    assert h.relay.counters_of(3) == {**zero, "to_tap": 0, "to_switch": 0}
    assert set(h.relay.counters_of(1)) == set(Counters().as_dict())


def test_a_tap_added_while_its_switch_is_attached_sends_at_once(h):
    """A port the switch reports after it connected (added to the bridge at run time) gets its
    TAP then: the kernel's frames from it go to the switch like the others', not dropped until
    the switch reconnects."""
    h.tap(3, 1)
    rec = Recorder()
    h.relay.attach(3, rec)
    late = h.tap(3, 2)
    other = h.tap(4, 2)  # another datapath's, with no sender attached
    late.send(frame(80, tag=9))
    assert rec.get() == (2, frame(80, tag=9))
    other.send(frame(80, tag=8))
    assert wait_until(lambda: h.relay.counters.send_dropped == 1), counts(h.relay)
    h.relay.attach(3, None)  # disconnected: a TAP added now has no sender either
    later = h.tap(3, 3)
    later.send(frame(80, tag=7))
    assert wait_until(lambda: h.relay.counters.send_dropped == 2), counts(h.relay)
    assert rec.frames.empty()
    assert counts(h.relay) == {"to_switch": 1, "send_dropped": 2}


def test_runt_from_tap_is_counted_and_relay_keeps_running(h):
    peer = h.tap(1, 1)
    rec = Recorder()
    h.relay.attach(1, rec)
    peer.send(b"\x01\x02\x03\x04\x05")
    peer.send(b"")
    assert wait_until(lambda: h.relay.counters.runt == 2), counts(h.relay)
    peer.send(frame(60, tag=9))
    assert rec.get() == (1, frame(60, tag=9))
    assert rec.frames.empty()
    assert wait_until(lambda: counts(h.relay) == {"runt": 2, "to_switch": 1}), counts(h.relay)


def test_relay_keeps_running_after_bad_frames_both_ways(h):
    peer = h.tap(1, 1, mtu=1500)
    rec = Recorder()
    h.relay.attach(1, rec)
    h.relay.to_tap(SwitchPort(1, 9), frame(60))
    h.relay.to_tap(SwitchPort(1, 1), frame(5))
    h.relay.to_tap(SwitchPort(1, 1), frame(4000))
    peer.send(b"\x00" * 5)
    peer.send(frame(60, tag=1))
    assert rec.get() == (1, frame(60, tag=1))
    assert h.relay.to_tap(SwitchPort(1, 1), frame(60, tag=2))
    assert peer.recv(65536) == frame(60, tag=2)
    assert wait_until(lambda: counts(h.relay) == {"unknown_port": 1, "runt": 2, "oversize": 1, "to_tap": 1,
                                                  "to_switch": 1}), counts(h.relay)


def test_many_frames_arrive_in_order(h):
    peer = h.tap(1, 1)
    rec = Recorder()
    h.relay.attach(1, rec)
    sent = [frame(60 + i % 1400, tag=i) for i in range(500)]
    for data in sent:
        peer.send(data)  # blocks with a timeout while the relay's queue is full
    got = [rec.get() for _ in sent]
    assert got == [(1, data) for data in sent]
    assert wait_until(lambda: h.relay.counters.to_switch == 500)


def test_frames_queued_together_go_to_the_switch_in_one_write(h):
    """One PacketOut write per drain of a TAP, not per frame: held while the sender is busy."""
    import threading
    peer = h.tap(1, 1)
    rec, busy, release = Recorder(), threading.Event(), threading.Event()

    def send(frames):
        if not busy.is_set():
            busy.set()
            release.wait(TIMEOUT)
        return rec(frames)

    h.relay.attach(1, send)
    peer.send(frame(60, tag=0))
    assert busy.wait(TIMEOUT)
    queued = [frame(60, tag=i) for i in range(1, 31)]  # fewer than a burst, and than the socket holds
    for data in queued:
        peer.send(data)
    release.set()
    got = [rec.get() for _ in range(len(queued) + 1)]
    assert got == [(1, frame(60, tag=i)) for i in range(len(queued) + 1)]
    assert rec.batches == [1, 30]
    assert counts(h.relay) == {"to_switch": len(queued) + 1}


def test_frames_from_two_busy_taps_keep_their_ports_and_order(h):
    first, second = h.tap(1, 1), h.tap(1, 2)
    rec = Recorder()
    h.relay.attach(1, rec)
    for i in range(8):
        first.send(frame(60, tag=i))
        second.send(frame(61, tag=i))
    got = [rec.get() for _ in range(16)]
    assert [f for p, f in got if p == 1] == [frame(60, tag=i) for i in range(8)]
    assert [f for p, f in got if p == 2] == [frame(61, tag=i) for i in range(8)]


def test_replacing_a_port_fd_closes_the_old_one(h):
    old_peer = h.tap(1, 1)
    old_fd = h.relay.fd(SwitchPort(1, 1))
    rec = Recorder()
    h.relay.attach(1, rec)
    new_peer = h.tap(1, 1)
    new_fd = h.relay.fd(SwitchPort(1, 1))
    assert new_fd != old_fd
    with pytest.raises(OSError):
        os.fstat(old_fd)
    h.relay.attach(1, rec)  # the new _Tap starts detached, as after a reconnect
    assert h.relay.to_tap(SwitchPort(1, 1), frame(60, tag=5))
    assert new_peer.recv(65536) == frame(60, tag=5)
    assert nothing_pending(old_peer)
    new_peer.send(frame(70, tag=6))
    assert rec.get() == (1, frame(70, tag=6))


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_relay_survives_a_sender_that_raises(h):
    peer = h.tap(1, 1)
    calls: list[list] = []
    rec = Recorder()

    def send(frames: list[tuple[int, bytes]]) -> bool:
        calls.append(frames)
        if len(calls) == 1:
            raise ConnectionResetError("switch went away mid-send")
        return rec(frames)

    h.relay.attach(1, send)
    peer.send(frame(60, tag=1))
    assert wait_until(lambda: len(calls) == 1)
    peer.send(frame(60, tag=2))
    assert rec.get(timeout=1.0) == (1, frame(60, tag=2))
    assert counts(h.relay) == {"send_dropped": 1, "to_switch": 1}


# --- lifecycle -------------------------------------------------------------------------------------


def test_stop_closes_the_fds_and_returns_promptly():
    harness = Harness()
    harness.relay.start()
    harness.tap(1, 1)
    harness.tap(1, 2)
    fds = [harness.relay.fd(SwitchPort(1, p)) for p in (1, 2)]
    started = time.monotonic()
    harness.close()
    assert time.monotonic() - started < 2.0
    for fd in fds:
        with pytest.raises(OSError):
            os.fstat(fd)
    assert harness.relay.fd(SwitchPort(1, 1)) is None


def test_counters_start_at_zero():
    assert set(Counters().as_dict().values()) == {0}
    assert set(Counters().as_dict()) == {"to_tap", "to_switch", "runt", "oversize", "unknown_port",
                                         "write_errors", "send_dropped", "unknown_vlan", "double_tagged"}
