"""The os-ken app: a thin shim that turns OpenFlow events into calls on the router core (core.py)."""

from __future__ import annotations

import logging

from os_ken.base import app_manager
from os_ken.controller import ofp_event
from os_ken.controller.handler import (CONFIG_DISPATCHER, DEAD_DISPATCHER, MAIN_DISPATCHER,
                                       set_ev_cls)
from os_ken.ofproto import ofproto_v1_3 as ofp

from typing import Protocol

from ...bridge.ports import PortState, SwitchPort
from ...bridge.relay import Relay
from ..openflow import readback
from . import connection, packetin

LOG = logging.getLogger("taprouter.app")


class Core(Protocol):
    """What the app calls, from os-ken's receive threads (core.RouterCore)."""

    relay: Relay

    def knows(self, dpid: int) -> bool: ...
    def switch_connected(self, dp) -> bool: ...
    def stranger_gone(self, dp) -> None: ...
    def switch_described(self, dp, ports: list[PortState]) -> None: ...
    def port_changed(self, dp, port: PortState, removed: bool) -> None: ...
    def flows_read(self, dp, stats: list, xid: int) -> None: ...
    def flow_removed(self, dp, cookie: int, reason: int) -> None: ...
    def groups_read(self, dp, stats: list) -> None: ...
    def meters_read(self, dp, stats: list) -> None: ...
    def barrier_reply(self, dp, xid: int) -> None: ...
    def meter_stats(self, dp, stats: list) -> None: ...
    def switch_error(self, dp, msg) -> None: ...
    def role_reply(self, dp, role: int, generation: int) -> None: ...
    def switch_down(self, dp) -> bool: ...


def _port_state(port) -> PortState:
    link_up = not (port.state & ofp.OFPPS_LINK_DOWN) and not (port.config & ofp.OFPPC_PORT_DOWN)
    return PortState(number=port.port_no, mac=port.hw_addr, link_up=link_up,
                     speed_kbps=getattr(port, "curr_speed", None) or None)


class TapRouterApp(app_manager.OSKenApp):
    OFP_VERSIONS = [ofp.OFP_VERSION]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.core: Core = kwargs["taprouter_core"]
        self._multipart: dict[tuple[int, int], list] = {}
        readback.install()  # flow stats arrive as raw entries: a million parse in seconds, not minutes
        packetin.install(self._deliver)  # PacketIns go to the relay without os-ken's objects and queues
        # and, once a switch is up, before os-ken's receive loop; over TLS when configured
        connection.wrap_at_birth(kwargs.get("taprouter_tls"))

    def _deliver(self, dpid: int, port: int, frame: bytes, reason: int) -> bool:
        """A PacketIn read on os-ken's receive thread; False leaves it to os-ken (and packet_in below)."""
        if not self.core.knows(dpid):
            return False
        self.core.relay.to_tap(SwitchPort(dpid, port), frame, reason)
        return True

    def _collect(self, ev) -> list | None:
        """Gather a multipart reply; returns the whole body on its last part."""
        msg = ev.msg
        key = (msg.datapath.id, msg.xid)
        parts = self._multipart.setdefault(key, [])
        parts.extend(msg.body)
        if msg.flags & ofp.OFPMPF_REPLY_MORE:
            return None
        return self._multipart.pop(key)

    @set_ev_cls(ofp_event.EventOFPStateChange, MAIN_DISPATCHER)
    def switch_ready(self, ev):
        # Only once os-ken has moved the datapath to MAIN (and set its id) may we ask for
        # its ports: a reply arriving before that would reach no MAIN handler.
        dp = ev.datapath
        LOG.info("switch %#x connected from %s", dp.id, dp.address)
        if not self.core.switch_connected(dp):
            LOG.warning("switch %#x connected but no router in the config has that dpid; ignoring it "
                        "(a reload that adds one takes it)", dp.id)

    @set_ev_cls(ofp_event.EventOFPPortDescStatsReply, MAIN_DISPATCHER)
    def port_desc(self, ev):
        ports = self._collect(ev)
        dp = ev.msg.datapath
        if ports is None or not self.core.knows(dp.id):
            return
        self.core.switch_described(dp, [_port_state(p) for p in ports if p.port_no <= ofp.OFPP_MAX])

    @set_ev_cls(ofp_event.EventOFPFlowStatsReply, MAIN_DISPATCHER)
    def flow_stats(self, ev):
        body = self._collect(ev)
        if body is not None and self.core.knows(ev.msg.datapath.id):
            self.core.flows_read(ev.msg.datapath, body, ev.msg.xid)

    @set_ev_cls(ofp_event.EventOFPFlowRemoved, MAIN_DISPATCHER)
    def flow_removed(self, ev):
        msg = ev.msg
        if self.core.knows(msg.datapath.id):
            self.core.flow_removed(msg.datapath, msg.cookie, msg.reason)

    @set_ev_cls(ofp_event.EventOFPGroupDescStatsReply, MAIN_DISPATCHER)
    def group_desc(self, ev):
        body = self._collect(ev)
        if body is not None and self.core.knows(ev.msg.datapath.id):
            self.core.groups_read(ev.msg.datapath, body)

    @set_ev_cls(ofp_event.EventOFPMeterConfigStatsReply, MAIN_DISPATCHER)
    def meter_config(self, ev):
        body = self._collect(ev)
        if body is not None and self.core.knows(ev.msg.datapath.id):
            self.core.meters_read(ev.msg.datapath, body)

    @set_ev_cls(ofp_event.EventOFPMeterStatsReply, MAIN_DISPATCHER)
    def meter_stats(self, ev):
        body = self._collect(ev)
        if body is not None and self.core.knows(ev.msg.datapath.id):
            self.core.meter_stats(ev.msg.datapath, body)

    @set_ev_cls(ofp_event.EventOFPBarrierReply, MAIN_DISPATCHER)
    def barrier_reply(self, ev):
        # Every switch's: a reload that removes a router waits for its switch's (core.py).
        self.core.barrier_reply(ev.msg.datapath, ev.msg.xid)

    @set_ev_cls(ofp_event.EventOFPPortStatus, MAIN_DISPATCHER)
    def port_status(self, ev):
        msg = ev.msg
        if not self.core.knows(msg.datapath.id):
            return
        removed = msg.reason == ofp.OFPPR_DELETE
        self.core.port_changed(msg.datapath, _port_state(msg.desc), removed)

    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    def packet_in(self, ev):
        msg = ev.msg
        self.core.relay.to_tap(SwitchPort(msg.datapath.id, msg.match["in_port"]), msg.data, msg.reason)

    @set_ev_cls(ofp_event.EventOFPRoleReply, MAIN_DISPATCHER)
    def role_reply(self, ev):
        msg = ev.msg
        if self.core.knows(msg.datapath.id):
            self.core.role_reply(msg.datapath, msg.role, msg.generation_id)

    @set_ev_cls(ofp_event.EventOFPErrorMsg, [CONFIG_DISPATCHER, MAIN_DISPATCHER])
    def error(self, ev):
        if self.core.knows(ev.msg.datapath.id):
            self.core.switch_error(ev.msg.datapath, ev.msg)

    @set_ev_cls(ofp_event.EventOFPStateChange, DEAD_DISPATCHER)
    def disconnected(self, ev):
        dp = ev.datapath
        if dp.id is None:
            return
        if not self.core.knows(dp.id):
            self.core.stranger_gone(dp)
            return
        if self.core.switch_down(dp):
            LOG.warning("switch %#x disconnected; its flows keep forwarding (fail-mode secure)", dp.id)
        else:
            LOG.info("switch %#x: a connection it has replaced is gone", dp.id)
