"""One router's OpenFlow session with its switch: the handshake, the read-back, errors and resyncs.

The session goes DOWN -> DESCRIBING (asked for its ports) -> READING (asked for its meters,
groups and flows) -> SYNCED, and back to READING when the switch reports an error: what was sent
may be half applied, so the switch is read again, after a back-off that doubles while errors
keep coming and resets once a pass after a read-back is answered without one. A request the
switch leaves unanswered is asked again. A switch that refuses an ONF bundle gets its deletes as
single flow_mods from then on.

Threads: events come from os-ken's receive threads through the router's queue (SessionEvent);
the reconcile thread alone calls handle, tick and send, and alone reads the session's state,
except `in_flight`, which os-ken's thread answers directly (inflight.py has its own lock).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import Enum

from os_ken.ofproto import ofproto_v1_3 as ofp

from ...bridge.ports import PortState
from ..openflow import errors, pipeline, readback, wire
from ..openflow.flows import Flow
from ..openflow.groups import GroupSpec
from ..openflow.meters import MeterSpec
from ..openflow.pipeline import COOKIE_MAGIC, COOKIE_MASK, Owner, Table
from ..planner.reconcile import Pass, ReadBack
from . import sending
from .inflight import InFlight

LOG = logging.getLogger("taprouter.session")

BACKOFF_MIN = 0.5
BACKOFF_MAX = 30.0
# A request the switch has not answered in this long is asked again (replies have been seen to go
# missing around a reconnection); a million flows read back in well under a minute.
PORT_DESC_RETRY = 5.0
READ_BACK_RETRY = 120.0
READ_PARTS = frozenset({"flows", "groups", "meters"})


class Phase(Enum):
    DOWN = "down"
    DESCRIBING = "describing"  # asked for its ports
    READING = "reading"  # asked for what it holds
    SYNCED = "synced"  # read back: passes may go out


# --- events, as os-ken's threads hand them over -------------------------------------------------

@dataclass(frozen=True)
class Connected:
    dp: object


@dataclass(frozen=True)
class Described:
    dp: object
    ports: tuple[PortState, ...]


@dataclass(frozen=True)
class PortChanged:
    dp: object
    port: PortState
    removed: bool


@dataclass(frozen=True)
class FlowsRead:
    dp: object
    routes: dict[int, int]
    flows: tuple[Flow, ...]
    unreadable: tuple[bytes, ...]  # entries with our cookie in a form we cannot express


@dataclass(frozen=True)
class GroupsRead:
    dp: object
    groups: dict[int, GroupSpec | None]


@dataclass(frozen=True)
class MetersRead:
    dp: object
    meters: dict[int, MeterSpec | None]


@dataclass(frozen=True)
class Answered:
    dp: object
    xid: int


@dataclass(frozen=True)
class Errored:
    dp: object
    type: int
    code: int
    xid: int
    data: bytes  # the start of the message the error is about


@dataclass(frozen=True)
class Disconnected:
    dp: object


@dataclass(frozen=True)
class FlowRemoved:
    """A flow that asked to report its end (a policy's, with a timeout) ended by one."""

    dp: object
    cookie: int
    reason: int  # OFPRR_IDLE_TIMEOUT or OFPRR_HARD_TIMEOUT


@dataclass(frozen=True)
class Counted:
    """The policy table's counters, as polled: policy id -> (packets, bytes), summed over its flows."""

    dp: object
    counters: dict[int, tuple[int, int]]


@dataclass(frozen=True)
class RoleReplied:
    """The switch's answer to a role request: the role it gave this connection, and the generation."""

    dp: object
    role: int  # OFPCR_ROLE_MASTER, _SLAVE or _EQUAL
    generation: int


SessionEvent = (RoleReplied | Connected | Described | PortChanged | FlowsRead | GroupsRead | MetersRead | Answered | Errored
                | Disconnected | FlowRemoved | Counted)


class SwitchSession:
    def __init__(self, name: str) -> None:
        self.name = name  # the router's, for the log
        self.dp = None
        self.phase = Phase.DOWN
        self.ports: dict[int, PortState] = {}
        self.in_flight = InFlight()
        self.bundles = True  # False once the switch refuses an ONF bundle message
        self.errors = 0
        self.backoff = BACKOFF_MIN
        self.resync_at: float | None = None
        self._asked = 0.0  # when the switch was last asked for its ports or its tables
        self._parts: dict[str, object] = {}  # what has been read back so far
        self._read_back: ReadBack | None = None  # complete, not yet taken by a pass
        self._unclean = False  # an error came since the last read-back
        self._since_read: set[int] = set()  # barrier xids of passes sent since the last read-back
        # HA (OpenFlow roles): what we last asked for and what the switch last confirmed, each
        # (role, generation); None with HA off, as the connection then stays EQUAL.
        self.role_sent: tuple[int, int] | None = None
        self.role_confirmed: tuple[int, int] | None = None
        self.role_asked = 0.0
        self.may_write = True  # False while an HA standby: nothing but reads goes to the switch

    # --- events ----------------------------------------------------------------------------

    def handle(self, event: SessionEvent, now: float) -> None:
        dp = event.dp
        if isinstance(event, Connected):
            self._connected(dp, now)
            return
        if dp is not self.dp:
            return  # from a connection the switch has replaced
        if isinstance(event, RoleReplied):
            self.role_confirmed = (event.role, event.generation)
        elif isinstance(event, Errored) and self._role_error(event):
            pass
        elif isinstance(event, Described):
            self.ports = {p.number: p for p in event.ports}
            if self.phase is Phase.DESCRIBING:
                self._read(now)
        elif isinstance(event, PortChanged):
            if event.removed:
                self.ports.pop(event.port.number, None)
            else:
                self.ports[event.port.number] = event.port
        elif isinstance(event, (FlowsRead, GroupsRead, MetersRead)):
            self._part(event, now)
        elif isinstance(event, Answered):
            self._answered(event.xid)
        elif isinstance(event, Errored):
            self._errored(event, now)
        elif isinstance(event, Disconnected):
            self.dp, self.phase = None, Phase.DOWN
            self._parts, self._read_back, self.resync_at = {}, None, None
            self.role_sent = self.role_confirmed = None
            self.in_flight.reset()

    def _connected(self, dp, now: float) -> None:
        """The OpenFlow session is up: ask for the ports (Described follows with the answer)."""
        if dp is not self.dp:
            self.role_sent = self.role_confirmed = None  # a new connection starts EQUAL
        self.dp, self.phase = dp, Phase.DESCRIBING
        self._parts, self._read_back, self.resync_at = {}, None, None
        self.in_flight.reset()
        self._asked = now
        dp.send_msg(dp.ofproto_parser.OFPPortDescStatsRequest(dp, 0))

    def request_role(self, role: int, generation: int, now: float) -> None:
        """Ask the switch for an OpenFlow role (HA); RoleReplied or a role error follows."""
        dp = self.dp
        dp.send_msg(dp.ofproto_parser.OFPRoleRequest(dp, role, generation))
        self.role_sent, self.role_asked = (role, generation), now
        if self.role_confirmed is not None and self.role_confirmed != (role, generation):
            self.role_confirmed = None

    def read_again(self, now: float) -> None:
        """Read the switch back now (a new HA master: another daemon wrote it until now)."""
        if self.phase in (Phase.READING, Phase.SYNCED):
            self._read(now)
        # Down or describing: the read-back follows the description anyway.

    def _role_error(self, event: Errored) -> bool:
        """A role request refused (a stale generation), or a write refused because the switch has
        made us slave (another master took over): not a reason to read the switch again. The role
        is asked again from what the lease says."""
        if not errors.is_role_error(event.type, event.code):
            return False
        if event.type == ofp.OFPET_ROLE_REQUEST_FAILED:
            LOG.warning("router %s: the switch refused the role request (code %d: %s)", self.name, event.code,
                        "stale generation" if event.code == ofp.OFPRRFC_STALE else "refused")
        elif self.role_confirmed is not None:
            LOG.warning("router %s: the switch says this connection is a slave now (another master)", self.name)
        self.role_sent = self.role_confirmed = None
        return True

    def _read(self, now: float) -> None:
        """Ask the switch for everything of ours it holds."""
        self.phase, self._parts, self._read_back, self._asked = Phase.READING, {}, None, now
        for msg in read_back_requests(self.dp):
            self.dp.send_msg(msg)

    def _part(self, event, now: float) -> None:
        if self.phase is not Phase.READING:
            return  # an answer to a request asked again, after the first answer came
        if isinstance(event, FlowsRead):
            for data in event.unreadable:
                self._delete_unreadable(data)
            self._parts["flows"] = event
        elif isinstance(event, GroupsRead):
            self._parts["groups"] = event.groups
        else:
            self._parts["meters"] = event.meters
        if self._parts.keys() == READ_PARTS:
            flows: FlowsRead = self._parts["flows"]
            self._read_back = ReadBack(flows.routes, frozenset(flows.flows), self._parts["groups"],
                                       self._parts["meters"])
            self._parts, self.phase = {}, Phase.SYNCED
            self._unclean, self._since_read = False, set()

    def _delete_unreadable(self, data: bytes) -> None:
        """A flow with our cookie that we cannot express is stale by definition: delete it, strictly."""
        dp = self.dp
        if not self.may_write:
            return  # an HA standby: the master deletes it
        try:
            entry = readback.parse(data)
        except ValueError:
            LOG.error("router %s: malformed flow entry from the switch, left alone: %s", self.name, data.hex())
            return
        LOG.warning("router %s: unreadable flow on the switch (%s); deleting it", self.name, entry)
        dp.send_msg(dp.ofproto_parser.OFPFlowMod(
            dp, cookie=entry.cookie, cookie_mask=0xFFFFFFFFFFFFFFFF, table_id=entry.table_id,
            command=ofp.OFPFC_DELETE_STRICT, priority=entry.priority,
            out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY, match=entry.match))

    def _answered(self, xid: int) -> None:
        if xid in self._since_read:
            self._since_read.discard(xid)
            if not self._unclean and self.backoff != BACKOFF_MIN:
                LOG.info("router %s: the switch took a pass without an error; resync back-off reset", self.name)
                self.backoff = BACKOFF_MIN

    def _errored(self, event: Errored, now: float) -> None:
        LOG.error("router %s: the switch returned an error: type=%d code=%d for xid %d; re-reading it in %.1f s",
                  self.name, event.type, event.code, event.xid, self.backoff)
        if self.bundles and wire.is_bundle_message(event.data):
            # Not every switch has the ONF bundle extension: deletes then go one flow_mod each.
            LOG.warning("router %s: the switch refuses bundles; route deletes go as single flow_mods", self.name)
            self.bundles = False
        self.errors += 1
        self._unclean = True
        if self.resync_at is None:
            self.resync_at = now + self.backoff
            self.backoff = min(self.backoff * 2, BACKOFF_MAX)

    def resync(self, now: float) -> None:
        """What was sent may be half applied (a pass failed while planning or sending): read the
        switch back, after the back-off."""
        if self.phase is not Phase.DOWN and self.resync_at is None:
            self.resync_at = now + self.backoff
            self.backoff = min(self.backoff * 2, BACKOFF_MAX)

    # --- time --------------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Read the switch again when a resync is due; ask again what it left unanswered."""
        if self.resync_at is not None and now >= self.resync_at:
            self.resync_at = None
            if self.phase is Phase.SYNCED:
                self._read(now)
            # Describing or reading: what comes back is read afresh anyway.
        waited = now - self._asked
        if self.phase is Phase.DESCRIBING and waited > PORT_DESC_RETRY:
            LOG.warning("router %s: the switch has not described its ports in %.0f s; asking again", self.name,
                        waited)
            self._connected(self.dp, now)
        elif self.phase is Phase.READING and waited > READ_BACK_RETRY:
            LOG.warning("router %s: the switch has not returned its %s in %.0f s; reading it again", self.name,
                        ", ".join(sorted(READ_PARTS - self._parts.keys())), waited)
            self._read(now)

    def next_deadline(self) -> float | None:
        """When tick has something to do next, at the latest."""
        deadlines = [t for t in (self.resync_at,
                                 self._asked + PORT_DESC_RETRY if self.phase is Phase.DESCRIBING else None,
                                 self._asked + READ_BACK_RETRY if self.phase is Phase.READING else None)
                     if t is not None]
        return min(deadlines) if deadlines else None

    # --- passes ------------------------------------------------------------------------------

    @property
    def synced(self) -> bool:
        return self.phase is Phase.SYNCED

    def take_read_back(self) -> ReadBack | None:
        """The read-back the next pass must start from, once."""
        read_back, self._read_back = self._read_back, None
        return read_back

    def send(self, plan: Pass) -> int:
        """Write one pass (sending.py); returns its barrier's xid, which InFlight then awaits."""
        xid = sending.send(self.dp, plan, self.bundles)
        self.in_flight.sent(xid)
        self._since_read.add(xid)
        return xid

    def count(self) -> int:
        """Ask for the policy table's counters (Counted follows); returns the request's xid, by which
        the reply is told from a read-back's."""
        dp = self.dp
        request = dp.ofproto_parser.OFPFlowStatsRequest(
            dp, 0, int(Table.POLICY), ofp.OFPP_ANY, ofp.OFPG_ANY, pipeline.cookie(Owner.POLICY),
            COOKIE_MASK | 0xFFFF << 32, dp.ofproto_parser.OFPMatch())
        dp.set_xid(request)
        dp.send_msg(request)
        return request.xid

    def count_drops(self) -> int:
        """Ask for the ingress table's counted drops (unknown VLAN, double tag); returns the request's xid."""
        dp = self.dp
        request = dp.ofproto_parser.OFPFlowStatsRequest(
            dp, 0, int(Table.INGRESS), ofp.OFPP_ANY, ofp.OFPG_ANY, pipeline.cookie(Owner.UNKNOWN_VLAN),
            pipeline.DROP_COOKIE_MASK, dp.ofproto_parser.OFPMatch())
        dp.set_xid(request)
        dp.send_msg(request)
        return request.xid

    def count_meters(self) -> None:
        """Ask for every meter's counters (the punt meters' drops, for /metrics)."""
        dp = self.dp
        request = dp.ofproto_parser.OFPMeterStatsRequest(dp, 0, ofp.OFPM_ALL)
        dp.send_msg(request)


def read_back_requests(dp) -> list:
    """What a switch is sent before it is read back: its config, the asynchronous messages we want,
    and the requests for its meters, groups and flows (ours only, by cookie)."""
    parser = dp.ofproto_parser
    set_config = parser.OFPSetConfig(dp, ofp.OFPC_FRAG_NORMAL, ofp.OFPCML_NO_BUFFER)
    # TTL expiry in dec_ttl must reach us (and so the kernel, for ICMP time-exceeded);
    # OpenFlow 1.3 leaves that to the asynchronous configuration.
    packet_in = 1 << ofp.OFPR_NO_MATCH | 1 << ofp.OFPR_ACTION | 1 << ofp.OFPR_INVALID_TTL
    status = 1 << ofp.OFPPR_ADD | 1 << ofp.OFPPR_DELETE | 1 << ofp.OFPPR_MODIFY
    # A policy's timeout firing must reach us (it is shown as expired, and not put back); the flows
    # we delete ourselves need not.
    removed = 1 << ofp.OFPRR_IDLE_TIMEOUT | 1 << ofp.OFPRR_HARD_TIMEOUT
    set_async = parser.OFPSetAsync(dp, [packet_in, 0], [status, status], [removed, 0])
    return [set_config, set_async,
            parser.OFPMeterConfigStatsRequest(dp, 0, ofp.OFPM_ALL),
            parser.OFPGroupDescStatsRequest(dp, 0),
            parser.OFPFlowStatsRequest(dp, 0, ofp.OFPTT_ALL, ofp.OFPP_ANY, ofp.OFPG_ANY, COOKIE_MAGIC, COOKIE_MASK,
                                       parser.OFPMatch())]
