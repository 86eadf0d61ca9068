"""sending.send: what one reconcile pass writes to the switch, in the pass's order; many route deletes as a bundle."""

from __future__ import annotations

import struct

import pytest
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser
from os_ken.ofproto.ofproto_protocol import ProtocolDesc

from taprouter.controller.openflow import wire
from taprouter.controller.session import sending
from taprouter.controller.openflow.groups import Bucket, GroupSpec, GroupType
from taprouter.controller.planner.reconcile import Pass
from taprouter.controller.openflow.flows import DecTtl, Output
from taprouter.controller.openflow.ops import GroupOp, Op

GID = 0x7A700001
SPEC = GroupSpec(GroupType.INDIRECT, (Bucket(0, (DecTtl(), Output(3))),))


class Datapath(ProtocolDesc):
    def __init__(self) -> None:
        super().__init__(ofp.OFP_VERSION)
        self.writes: list[bytes] = []

    def send(self, data: bytes) -> bool:
        self.writes.append(data)
        return True

    def set_xid(self, msg) -> None:
        msg.set_xid(99)


def messages(data: bytes) -> list[tuple]:
    """(type, experimenter type or flow_mod command or None, bundle id or None) per message."""
    out, pos = [], 0
    while pos < len(data):
        _version, kind, length = struct.unpack_from("!BBH", data, pos)
        body = data[pos:pos + length]
        if kind == ofp.OFPT_EXPERIMENTER:
            exp_type, bundle_id = struct.unpack_from("!II", body, 12)
            detail = exp_type
            if exp_type == wire.ONF_BUNDLE_ADD:
                inner = body[24:]
                assert struct.unpack_from("!B", inner, 1)[0] == ofp.OFPT_FLOW_MOD
                detail = ("add", inner[25])  # the inner flow_mod's command
            out.append((kind, detail, bundle_id))
        elif kind == ofp.OFPT_FLOW_MOD:
            out.append((kind, body[25], None))
        else:
            out.append((kind, None, None))
        pos += length
    return out


def changes(adds: int, deletes: int) -> Pass:
    routes = [(Op.ADD, 24 << 32 | 0x140000 + i, GID) for i in range(adds)]
    routes += [(Op.DELETE, 24 << 32 | 0x150000 + i, GID) for i in range(deletes)]
    return Pass(group_upserts=[GroupOp(Op.ADD, GID, SPEC)], routes=routes,
                group_deletes=[GroupOp(Op.DELETE, GID + 1, SPEC)], route_counts=(adds, 0, deletes))


def test_a_few_deletes_go_as_plain_flow_mods():
    dp = Datapath()
    xid = sending.send(dp, changes(3, sending.BUNDLE_DELETES - 1))
    data = b"".join(dp.writes)
    sent = messages(data)
    assert xid == 99 == struct.unpack_from("!I", data, len(data) - 4)[0]  # the barrier's, to await its reply
    assert [kind for kind, _, _ in sent] == ([ofp.OFPT_GROUP_MOD] + [ofp.OFPT_FLOW_MOD] * (sending.BUNDLE_DELETES + 2)
                                            + [ofp.OFPT_GROUP_MOD, ofp.OFPT_BARRIER_REQUEST])
    assert [detail for _, detail, _ in sent[1:-2]] == [ofp.OFPFC_ADD] * 3 + [ofp.OFPFC_DELETE_STRICT] * (
        sending.BUNDLE_DELETES - 1)


@pytest.mark.parametrize("adds", [0, 5])
def test_many_deletes_go_as_one_bundle_after_the_adds_and_before_the_group_deletes(adds):
    dp = Datapath()
    count = sending.BUNDLE_DELETES + 10
    sending.send(dp, changes(adds, count))
    sent = messages(b"".join(dp.writes))
    exp = ofp.OFPT_EXPERIMENTER
    assert sent[0][0] == ofp.OFPT_GROUP_MOD
    assert [detail for _, detail, _ in sent[1:1 + adds]] == [ofp.OFPFC_ADD] * adds
    bundle = sent[1 + adds:1 + adds + count + 2]
    assert bundle[0][:2] == (exp, wire.ONF_BUNDLE_CONTROL) and bundle[-1][:2] == (exp, wire.ONF_BUNDLE_CONTROL)
    assert [detail for _, detail, _ in bundle[1:-1]] == [("add", ofp.OFPFC_DELETE_STRICT)] * count
    assert len({bundle_id for _, _, bundle_id in bundle}) == 1
    assert [kind for kind, _, _ in sent[1 + adds + count + 2:]] == [ofp.OFPT_GROUP_MOD, ofp.OFPT_BARRIER_REQUEST]
    # Open, then commit: the control messages' types.
    data = b"".join(dp.writes)
    controls = [struct.unpack_from("!H", data, pos + 20)[0] for pos in _offsets(data)
                if data[pos + 1] == exp and struct.unpack_from("!I", data, pos + 12)[0] == wire.ONF_BUNDLE_CONTROL]
    assert controls == [wire.BUNDLE_OPEN, wire.BUNDLE_COMMIT]


def test_each_pass_opens_a_bundle_of_its_own():
    dp = Datapath()
    sending.send(dp, changes(0, sending.BUNDLE_DELETES))
    sending.send(dp, changes(0, sending.BUNDLE_DELETES))
    ids = {bundle_id for kind, _, bundle_id in messages(b"".join(dp.writes)) if kind == ofp.OFPT_EXPERIMENTER}
    assert len(ids) == 2


def test_the_bundle_messages_parse_in_os_ken():
    dp = Datapath()
    sending.send(dp, changes(0, sending.BUNDLE_DELETES))
    data = b"".join(dp.writes)
    pos = next(pos for pos in _offsets(data) if data[pos + 1] == ofp.OFPT_EXPERIMENTER)
    length = struct.unpack_from("!H", data, pos + 2)[0]
    msg = parser.msg_parser(dp, ofp.OFP_VERSION, ofp.OFPT_EXPERIMENTER, length, 0, data[pos:pos + length])
    assert isinstance(msg, parser.ONFBundleCtrlMsg) and msg.type == wire.BUNDLE_OPEN


def _offsets(data: bytes):
    pos = 0
    while pos < len(data):
        yield pos
        pos += struct.unpack_from("!H", data, pos + 2)[0]


def test_a_switch_that_refused_a_bundle_gets_every_delete_as_a_flow_mod():
    dp = Datapath()
    count = sending.BUNDLE_DELETES + 10
    sending.send(dp, changes(2, count), bundles=False)
    sent = messages(b"".join(dp.writes))
    assert [kind for kind, _, _ in sent].count(ofp.OFPT_EXPERIMENTER) == 0
    assert [detail for _, detail, _ in sent[1:-2]] == [ofp.OFPFC_ADD] * 2 + [ofp.OFPFC_DELETE_STRICT] * count


def test_an_error_quoting_a_bundle_message_is_told_from_one_quoting_anything_else():
    inner = wire.encode_route(Op.DELETE, 24 << 32 | 0x140000, GID)
    assert wire.is_bundle_message(wire.encode_bundle_control(wire.BUNDLE_OPEN, 3))
    assert wire.is_bundle_message((wire.bundle_add_head(3, len(inner)) + inner)[:64])  # an error quotes 64 bytes
    assert not wire.is_bundle_message(inner)
    assert not wire.is_bundle_message(wire.encode_bundle_control(wire.BUNDLE_OPEN, 3)[:12])
    other = bytearray(wire.encode_bundle_control(wire.BUNDLE_OPEN, 3))
    other[8:12] = (0x2320).to_bytes(4, "big")  # Nicira's experimenter id
    assert not wire.is_bundle_message(bytes(other))
