"""The relay and 802.1Q tags: tagged frames reach their VLAN's TAP without the tag, frames from a VLAN's
TAP leave tagged; unknown VLANs and double tags are counted, never written."""

from __future__ import annotations

from typing import Iterator

import pytest

from taprouter.bridge import vlan
from taprouter.bridge.ports import SwitchPort
from test_relay import Harness, Recorder, counts, frame, nothing_pending

DST, SRC = bytes.fromhex("0e0000000101"), bytes.fromhex("020000000010")
IPV4 = bytes.fromhex("0800")
PAYLOAD = bytes(range(46))


def tagged(vid: int, pcp: int = 0, tpid: int = 0x8100, inner: bytes = IPV4) -> bytes:
    return DST + SRC + (tpid).to_bytes(2, "big") + (pcp << 13 | vid).to_bytes(2, "big") + inner + PAYLOAD


UNTAGGED = DST + SRC + IPV4 + PAYLOAD


@pytest.fixture
def h() -> Iterator[Harness]:
    harness = Harness()
    harness.relay.start()
    try:
        yield harness
    finally:
        harness.close()


def vlan_tap(h: Harness, dpid: int, port: int, vid: int):
    return h.tap(dpid, port, name=f"t{port}.{vid}", vid=vid)


def test_strip_and_push_on_bytes():
    assert vlan.kind(UNTAGGED) is vlan.Kind.UNTAGGED
    assert vlan.kind(tagged(100, 5)) is vlan.Kind.TAGGED
    tag, inner = vlan.strip(tagged(100, 5))
    assert tag == vlan.Tag(100, 5) and inner == UNTAGGED
    assert vlan.push(UNTAGGED, 100) == tagged(100)
    assert vlan.push(UNTAGGED, 4094, 7) == tagged(4094, 7)
    assert vlan.strip(vlan.push(UNTAGGED, 1))[1] == UNTAGGED


@pytest.mark.parametrize("data", [tagged(100, inner=bytes.fromhex("8100")), tagged(100, inner=bytes.fromhex("88a8")),
                                  tagged(100, tpid=0x88A8)], ids=["q-in-q", "q-in-ad", "ad-outer"])
def test_double_tagged_kinds(data):
    assert vlan.kind(data) is vlan.Kind.DOUBLE_TAGGED


def test_tagged_frame_goes_to_its_vlans_tap_without_the_tag(h):
    plain, v100, v200 = h.tap(1, 1), vlan_tap(h, 1, 1, 100), vlan_tap(h, 1, 1, 200)
    assert h.relay.to_tap(SwitchPort(1, 1), tagged(200, pcp=3))
    assert v200.recv(65536) == UNTAGGED
    assert h.relay.to_tap(SwitchPort(1, 1), UNTAGGED)
    assert plain.recv(65536) == UNTAGGED
    assert nothing_pending(v100)
    assert counts(h.relay) == {"to_tap": 2}


def test_unknown_vlan_and_double_tagged_are_counted_not_written(h):
    v100 = vlan_tap(h, 1, 1, 100)
    assert not h.relay.to_tap(SwitchPort(1, 1), tagged(101))
    assert not h.relay.to_tap(SwitchPort(1, 1), tagged(100, inner=bytes.fromhex("8100")))
    assert not h.relay.to_tap(SwitchPort(1, 1), tagged(100, tpid=0x88A8))
    assert not h.relay.to_tap(SwitchPort(1, 1), UNTAGGED)  # the port has no untagged TAP
    assert nothing_pending(v100)
    assert counts(h.relay) == {"unknown_vlan": 1, "double_tagged": 2, "unknown_port": 1}
    assert h.relay.counters_of(1)["double_tagged"] == 2


def test_frame_from_a_vlan_tap_leaves_the_port_tagged(h):
    plain, v100 = h.tap(1, 4), vlan_tap(h, 1, 4, 100)
    rec = Recorder()
    h.relay.attach(1, rec)
    v100.send(UNTAGGED)
    assert rec.get() == (4, tagged(100))
    plain.send(UNTAGGED)
    assert rec.get() == (4, UNTAGGED)
