"""packetin: the struct reading of PacketIns agrees with os-ken's parser, and install() routes them."""

from __future__ import annotations

import random
import struct

import pytest
from os_ken.ofproto import ofproto_parser
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser
from os_ken.ofproto.ofproto_protocol import ProtocolDesc

from taprouter.controller.openflow import decode
from taprouter.controller.session import packetin

SEED = 20251126


def packet_in(fields: dict, data: bytes, total_len: int | None = None, xid: int = 5, pad_tail: int = 0) -> bytearray:
    """An OFPT_PACKET_IN as a switch sends it: os-ken serializes the match, the rest is packed here."""
    match = parser.OFPMatch(**fields)
    buf = bytearray()
    match_len = match.serialize(buf, 0)  # padded to 8 in buf; returns the unpadded length
    body = struct.pack("!IHBBQ", 0xFFFFFFFF, len(data) if total_len is None else total_len, ofp.OFPR_NO_MATCH, 1,
                       0x7A70) + bytes(buf) + b"\0\0" + data + bytes(pad_tail)
    assert match_len <= len(buf)
    return bytearray(struct.pack("!BBHI", ofp.OFP_VERSION, ofp.OFPT_PACKET_IN, 8 + len(body), xid) + body)


def os_ken(buf: bytearray):
    return parser.OFPPacketIn.parser(ProtocolDesc(ofp.OFP_VERSION), ofp.OFP_VERSION, ofp.OFPT_PACKET_IN, len(buf), 5,
                                     buf)


def random_fields(rng: random.Random) -> dict:
    fields = {"in_port": rng.choice([1, 2, 0xFFFFFF00, rng.randrange(1, 1 << 31)])}
    if rng.random() < 0.5:
        fields["metadata"] = rng.getrandbits(64)
    if rng.random() < 0.5:
        fields["eth_type"] = 0x0800
        fields["ipv4_dst"] = "10.0.0.%d" % rng.randrange(256)
    if rng.random() < 0.3:
        fields["tunnel_id"] = rng.getrandbits(64)
    return fields


@pytest.mark.parametrize("seed", range(200))
def test_read_agrees_with_os_ken(seed):
    rng = random.Random(SEED + seed)
    data = rng.randbytes(rng.choice([0, 1, 14, 60, 64, 1514, rng.randrange(2000)]))
    buf = packet_in(random_fields(rng), data, pad_tail=rng.choice([0, 0, 3, 6]))
    reference = os_ken(bytearray(buf))
    assert decode.packet_in(buf) == (reference.match["in_port"], bytes(reference.data), reference.reason)


def test_total_len_shorter_than_the_data_cuts_it_as_os_ken_does():
    buf = packet_in({"in_port": 3}, bytes(range(100)), total_len=60)
    assert decode.packet_in(buf) == (3, bytes(range(60)), ofp.OFPR_NO_MATCH)
    assert bytes(os_ken(bytearray(buf)).data) == bytes(range(60))


def test_without_in_port_or_truncated_it_declines():
    assert decode.packet_in(packet_in({"eth_type": 0x0806}, b"x" * 60)) is None
    whole = packet_in({"in_port": 1}, b"x" * 60)
    for cut in (0, 8, 20, 31):
        assert decode.packet_in(whole[:cut]) is None
    assert decode.packet_in(whole[:-10]) is None  # the header's length is longer than the bytes


class FakeDatapath(ProtocolDesc):
    def __init__(self, dpid):
        super().__init__(ofp.OFP_VERSION)
        self.id = dpid


def test_install_delivers_and_os_ken_makes_no_message_else_falls_back(monkeypatch):
    taken = []
    os_kens = parser._MSG_PARSERS[ofp.OFPT_PACKET_IN]
    monkeypatch.setitem(parser._MSG_PARSERS, ofp.OFPT_PACKET_IN, os_kens)

    def deliver(dpid, port, frame, reason):
        if dpid != 7:
            return False
        taken.append((dpid, port, frame))
        return True

    frame = bytes(range(64))
    buf = packet_in({"in_port": 4}, frame)
    try:
        packetin.install(deliver)
        assert ofproto_parser.msg(FakeDatapath(7), ofp.OFP_VERSION, ofp.OFPT_PACKET_IN, len(buf), 5, buf) is None
        assert taken == [(7, 4, frame)]
        # Another datapath, or a PacketIn without in_port: os-ken's parser, as before.
        msg = ofproto_parser.msg(FakeDatapath(8), ofp.OFP_VERSION, ofp.OFPT_PACKET_IN, len(buf), 5, bytearray(buf))
        assert isinstance(msg, parser.OFPPacketIn) and bytes(msg.data) == frame
        odd = packet_in({"eth_type": 0x0806}, frame)
        msg = ofproto_parser.msg(FakeDatapath(7), ofp.OFP_VERSION, ofp.OFPT_PACKET_IN, len(odd), 5, odd)
        assert isinstance(msg, parser.OFPPacketIn) and len(taken) == 1
    finally:
        monkeypatch.undo()
    msg = ofproto_parser.msg(FakeDatapath(7), ofp.OFP_VERSION, ofp.OFPT_PACKET_IN, len(buf), 5, bytearray(buf))
    assert isinstance(msg, parser.OFPPacketIn) and len(taken) == 1
