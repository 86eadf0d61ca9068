"""A switch for the session's tests: the in-memory OpenFlow table behind os-ken's parsers.

It is the datapath the daemon writes to (send_msg, send, set_xid), and, once `deliver` runs, what
os-ken's receive thread would then do with the switch's answers: call the daemon's core as the app
does (barrier replies, errors, read-back replies) or hand the router its port description (the
TAPs that core.switch_described would open are not what these tests are about).

Flow, group and meter mods and ONF bundles are applied to the table as Open vSwitch applies them,
and what it would refuse is answered with an error quoting the message, as a switch does.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass
from types import SimpleNamespace

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from oftable import OFTable
from taprouter.bridge.ports import PortState
from taprouter.controller.openflow import decode, pipeline, readback, wire
from taprouter.controller.openflow.ops import FlowOp, GroupOp, Op
from taprouter.controller.session.switch import Described
from test_readback import entry

_FLOW_OPS = {ofp.OFPFC_ADD: Op.ADD, ofp.OFPFC_MODIFY_STRICT: Op.MODIFY, ofp.OFPFC_DELETE_STRICT: Op.DELETE}
_GROUP_OPS = {ofp.OFPGC_ADD: Op.ADD, ofp.OFPGC_MODIFY: Op.MODIFY, ofp.OFPGC_DELETE: Op.DELETE}
ERROR_QUOTE = 64  # bytes of the offending message an error carries, as Open vSwitch sends


@dataclass(frozen=True)
class Error:
    """An OFPT_ERROR as os-ken's app hands it to the core."""

    type: int
    code: int
    xid: int
    data: bytes


class FakeSwitch:
    ofproto = ofp
    ofproto_parser = parser
    socket = None

    def __init__(self, core, dpid: int, ports: list[PortState], table: OFTable | None = None) -> None:
        self.core, self.id, self.ports = core, dpid, ports
        self.address = ("127.0.0.1", 40000 + dpid)
        self.table = table if table is not None else OFTable(strict=False, invalid_ttl_to_controller=True)
        self.meters: dict[int, object] = {}
        self.received: list[bytes] = []  # every message, in order, as the daemon wrote it
        self._pending: list[bytes] = []
        self._xid = 0
        self._bundle: list[bytes] | None = None
        self.refuse_bundles = False  # answer every ONF bundle message with an error
        self.refuse_prefix: int | None = None  # answer an add of this route flow with an error
        self.refuse_cookie: int | None = None  # answer an add of a flow with this cookie: its table is full
        self.silent: set[int] = set()  # multipart types left unanswered
        self.counts: dict[tuple, tuple[int, int]] = {}  # a flow's key -> its packet and byte counts
        self._rng = random.Random(7)
        self.role = ofp.OFPCR_ROLE_EQUAL  # this connection's OpenFlow role

    # --- what os-ken's Datapath offers the daemon ----------------------------------------------

    def set_xid(self, msg) -> int:
        self._xid += 1
        msg.set_xid(self._xid)
        return self._xid

    def send_msg(self, msg) -> bool:
        if msg.xid is None:
            self.set_xid(msg)
        msg.serialize()
        return self.send(bytes(msg.buf))

    def send(self, data: bytes) -> bool:
        self._pending.append(bytes(data))
        return True

    # --- the switch -------------------------------------------------------------------------

    def deliver(self) -> int:
        """Take what the daemon wrote, in order, and answer it; returns how many messages it took."""
        taken = 0
        while self._pending:
            data = self._pending.pop(0)
            pos = 0
            while pos < len(data):
                length = struct.unpack_from("!H", data, pos + 2)[0]
                self._take(data[pos:pos + length])
                pos += length
                taken += 1
        return taken

    def mods(self) -> list[int]:
        """The types of the state-changing messages received (flow, group and meter mods, bundles)."""
        kinds = (ofp.OFPT_FLOW_MOD, ofp.OFPT_GROUP_MOD, ofp.OFPT_METER_MOD, ofp.OFPT_EXPERIMENTER)
        return [m[1] for m in self.received if m[1] in kinds]

    def _take(self, msg: bytes) -> None:
        self.received.append(msg)
        kind, xid = msg[1], struct.unpack_from("!I", msg, 4)[0]
        if kind == ofp.OFPT_EXPERIMENTER:
            self._bundle_message(msg, xid)
        elif kind in (ofp.OFPT_FLOW_MOD, ofp.OFPT_GROUP_MOD, ofp.OFPT_METER_MOD):
            if self.role == ofp.OFPCR_ROLE_SLAVE:
                self._error(msg, xid, ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_IS_SLAVE)
                return
            self._apply(msg, xid)
        elif kind == ofp.OFPT_BARRIER_REQUEST:
            self.core.barrier_reply(self, xid)
        elif kind == ofp.OFPT_ROLE_REQUEST:
            # OpenFlow roles (HA), as Open vSwitch has them: a slave's writes are refused.
            role, generation = struct.unpack_from("!I4xQ", msg, 8)
            self.role = role
            self.core.role_reply(self, role, generation)
        elif kind == ofp.OFPT_MULTIPART_REQUEST:
            self._multipart(msg, xid)

    def _error(self, msg: bytes, xid: int, kind: int = ofp.OFPET_BAD_REQUEST, code: int = 0) -> None:
        self.core.switch_error(self, Error(kind, code, xid, msg[:ERROR_QUOTE]))

    def _bundle_message(self, msg: bytes, xid: int) -> None:
        experimenter, exp_type = struct.unpack_from("!II", msg, 8)
        assert experimenter == wire.ONF_EXPERIMENTER, msg.hex()
        if self.refuse_bundles:
            self._error(msg, xid, ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_EXPERIMENTER)
            return
        if exp_type == wire.ONF_BUNDLE_CONTROL:
            control = struct.unpack_from("!H", msg, 20)[0]
            if control == wire.BUNDLE_OPEN:
                self._bundle = []
            elif control == wire.BUNDLE_COMMIT:
                inner, self._bundle = self._bundle, None
                for m in inner:
                    self._apply(m, xid)
        else:
            self._bundle.append(msg[24:])

    def _apply(self, msg: bytes, xid: int) -> None:
        errors = len(self.table.errors)
        kind = msg[1]
        if kind == ofp.OFPT_FLOW_MOD:
            mod = parser.OFPFlowMod.parser(self, ofp.OFP_VERSION, kind, len(msg), xid, msg)
            stats = SimpleNamespace(table_id=mod.table_id, priority=mod.priority, cookie=mod.cookie, match=mod.match,
                                    instructions=mod.instructions, idle_timeout=mod.idle_timeout,
                                    hard_timeout=mod.hard_timeout, flags=mod.flags)
            if mod.command == ofp.OFPFC_DELETE:  # not strict: every flow its cookie (mask) and table name
                self.table.apply([FlowOp(Op.DELETE, f) for f in sorted(self.table.snapshot())
                                  if (f.cookie ^ mod.cookie) & mod.cookie_mask == 0
                                  and mod.table_id in (ofp.OFPTT_ALL, f.table)])
                return
            flow = decode.flow_from_stats(stats)
            op = _FLOW_OPS[mod.command]
            if op is not Op.DELETE:
                if flow.meter is not None and flow.meter not in self.meters:
                    self._error(msg, xid, ofp.OFPET_METER_MOD_FAILED, ofp.OFPMMFC_UNKNOWN_METER)
                    return
                if flow.cookie == self.refuse_cookie:
                    self._error(msg, xid, ofp.OFPET_FLOW_MOD_FAILED, ofp.OFPFMFC_TABLE_FULL)
                    return
                if self.refuse_prefix is not None and readback.decode(as_stats(flow)) == (self.refuse_prefix, _target(flow)):
                    self._error(msg, xid, ofp.OFPET_FLOW_MOD_FAILED, ofp.OFPFMFC_TABLE_FULL)
                    return
            self.table.apply([FlowOp(op, flow)])
        elif kind == ofp.OFPT_GROUP_MOD:
            # os-ken parses no group_mod body: read it as the group-desc entry it becomes.
            command, group_type, gid = struct.unpack_from("!HBxI", msg, ofp.OFP_HEADER_SIZE)
            op = _GROUP_OPS[command]
            spec = None if op is Op.DELETE else decode.group_from_desc(group_desc_of(group_type, gid, msg))
            self.table.apply([GroupOp(op, gid, spec)])
        else:
            command, flags, meter_id = struct.unpack_from("!HHI", msg, ofp.OFP_HEADER_SIZE)
            bands = [parser.OFPMeterBandDrop(rate=rate, burst_size=burst)
                     for _type, _len, rate, burst in struct.iter_unpack("!HHII4x", msg[16:])]
            if command == ofp.OFPMC_DELETE:
                self.meters.pop(meter_id, None)
            elif (command == ofp.OFPMC_ADD) == (meter_id in self.meters):
                self._error(msg, xid, ofp.OFPET_METER_MOD_FAILED, ofp.OFPMMFC_METER_EXISTS)
                return
            else:
                self.meters[meter_id] = SimpleNamespace(meter_id=meter_id, flags=flags, bands=bands)
        if len(self.table.errors) > errors:
            self._error(msg, xid, ofp.OFPET_BAD_ACTION)

    def _multipart(self, msg: bytes, xid: int) -> None:
        kind = struct.unpack_from("!H", msg, 8)[0]
        if kind in self.silent:
            return
        if kind == ofp.OFPMP_PORT_DESC:
            self.core.routers[self.id].hand_over(Described(self, tuple(self.ports)))
        elif kind == ofp.OFPMP_METER_CONFIG:
            self.core.meters_read(self, list(self.meters.values()))
        elif kind == ofp.OFPMP_GROUP_DESC:
            self.core.groups_read(self, [group_desc(gid, spec) for gid, spec in self.table.groups.items()])
        elif kind == ofp.OFPMP_FLOW:
            ours = [f for f in sorted(self.table.snapshot()) if pipeline.is_ours(f.cookie)]
            table, = struct.unpack_from("!B", msg, 16)
            if table != ofp.OFPTT_ALL:
                ours = [f for f in ours if f.table == table]
            block = b"".join(self._entry(f) for f in ours)
            self.core.flows_read(self, [readback.RawFlowStats(block)] if block else [], xid)


    def _entry(self, flow) -> bytes:
        """The flow's flow-stats entry, with its counts from `counts` (none: zero)."""
        data = bytearray(entry(flow, self._rng))
        struct.pack_into("!QQ", data, 32, *self.counts.get(flow.key, (0, 0)))
        return bytes(data)

    def expire(self, cookie: int, reason: int = ofp.OFPRR_HARD_TIMEOUT) -> None:
        """One flow with this cookie times out: it goes, and the switch reports it."""
        flow = next(f for f in sorted(self.table.snapshot()) if f.cookie == cookie)
        self.table.apply([FlowOp(Op.DELETE, flow)])
        self.core.flow_removed(self, cookie, reason)


def _target(flow) -> int:
    return flow.actions[0].group_id if flow.meter is None else pipeline.KERNEL


def as_stats(flow) -> bytes:
    return entry(flow, random.Random(1))


def group_desc_of(group_type: int, gid: int, group_mod: bytes) -> parser.OFPGroupDescStats:
    """The group-desc entry a switch reports for a group added by this group_mod."""
    buckets = group_mod[ofp.OFP_GROUP_MOD_SIZE:]
    desc = struct.pack(ofp.OFP_GROUP_DESC_STATS_PACK_STR, ofp.OFP_GROUP_DESC_STATS_SIZE + len(buckets),
                       group_type, gid) + buckets
    return parser.OFPGroupDescStats.parser(desc, 0)


def group_desc(gid: int, spec) -> parser.OFPGroupDescStats:
    mod = wire.encode_group_mod(GroupOp(Op.ADD, gid, spec))
    return group_desc_of(mod[10], gid, mod)
