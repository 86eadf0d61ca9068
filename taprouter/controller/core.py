"""Per-switch router state: sets up TAPs for ports, plans flows, and reconciles them.

The os-ken app calls in here with already-decoded events; this module owns no
socket but the datapath it is handed, and the planner and differ it calls are pure.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field

from ..bridge import netns, tap
from ..bridge.holder import HolderClient, HolderError
from ..bridge.ports import SwitchPort
from ..bridge.relay import Relay
from ..config import Config, RouterConfig
from .. import paths
from . import codec, punt
from .flows import Flow, mac_to_int
from .reconcile import FlowOp, Op, diff

LOG = logging.getLogger("taprouter.core")


@dataclass(frozen=True)
class SwitchPortInfo:
    number: int
    mac: str
    link_up: bool


@dataclass
class _Switch:
    router: RouterConfig
    holder: HolderClient
    datapath: object | None = None
    ports: dict[int, SwitchPortInfo] = field(default_factory=dict)
    warned_ports: set[int] = field(default_factory=set)
    installed: frozenset[Flow] | None = None  # None until read back from the switch
    errors: int = 0
    last_reconcile: dict[str, int] = field(default_factory=dict)


class RouterCore:
    def __init__(self, config: Config):
        self.config = config
        self.relay = Relay()
        self._switches = {r.dpid: _Switch(r, HolderClient(paths.router_dir(r.name)))
                          for r in config.routers}
        self._status_stop = threading.Event()

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Adopt the TAP fds a previous daemon left with the holder, before any switch connects."""
        for sw in self._switches.values():
            router = sw.router
            if netns.ensure(router.netns):
                LOG.info("router %s: created netns %s", router.name, router.netns)
            sw.holder.start()
            held = sw.holder.get()
            by_tap = {p.tap: p for p in router.ports}
            for name, fd in held.items():
                port = by_tap.get(name)
                if port is None:
                    LOG.info("router %s: holder had %s, no longer configured; releasing it", router.name, name)
                    os.close(fd)
                    sw.holder.drop(name)
                    continue
                state = tap.link_state(router.netns, name)
                self.relay.add(SwitchPort(router.dpid, port.number), name, fd, state.mtu)
            if held:
                LOG.info("router %s: re-adopted %d TAP(s) from the holder: %s",
                         router.name, len(held), ", ".join(sorted(held)))
        self.relay.start()
        threading.Thread(target=self._status_loop, name="status", daemon=True).start()

    def stop(self) -> None:
        self._status_stop.set()
        self.relay.stop()
        self._write_status()
        LOG.info("stopped; relay counters %s", self.relay.counters.as_dict())

    def knows(self, dpid: int) -> bool:
        return dpid in self._switches

    # --- switch events -----------------------------------------------------------------------

    def switch_up(self, dp, ports: list[SwitchPortInfo]) -> None:
        sw = self._switches[dp.id]
        sw.datapath = dp
        sw.installed = None
        sw.ports = {p.number: p for p in ports}
        for port in sw.router.ports:
            if port.number not in sw.ports:
                LOG.warning("router %s: configured port %d is not on switch %#x", sw.router.name,
                            port.number, dp.id)
        for info in ports:
            self._port_ready(sw, info)
        self.relay.attach(dp.id, lambda port, frame: dp.send(codec.packet_out(port, frame)))

    def switch_down(self, dpid: int) -> None:
        sw = self._switches[dpid]
        sw.datapath = None
        sw.installed = None
        self.relay.attach(dpid, None)

    def port_changed(self, dp, info: SwitchPortInfo, removed: bool) -> None:
        sw = self._switches[dp.id]
        if removed:
            sw.ports.pop(info.number, None)
            info = SwitchPortInfo(info.number, info.mac, False)
        else:
            sw.ports[info.number] = info
        LOG.info("router %s: port %d %s", sw.router.name, info.number,
                 "removed" if removed else ("up" if info.link_up else "down"))
        self._port_ready(sw, info)
        if sw.installed is not None:
            self._reconcile(sw)

    def switch_error(self, dpid: int, msg) -> None:
        sw = self._switches.get(dpid)
        if sw is not None:
            sw.errors += 1
        LOG.error("switch %#x returned an error: type=%d code=%d for xid %d (%d bytes of request)",
                  dpid, msg.type, msg.code, msg.xid, len(msg.data or b""))

    def _port_ready(self, sw: _Switch, info: SwitchPortInfo) -> None:
        port_cfg = sw.router.port(info.number)
        if port_cfg is None:
            if info.number not in sw.warned_ports:
                sw.warned_ports.add(info.number)
                LOG.info("router %s: switch port %d is not in the config; leaving it alone",
                         sw.router.name, info.number)
            return
        where = SwitchPort(sw.router.dpid, info.number)
        fd = self.relay.fd(where)
        try:
            if fd is None:
                fd = tap.open_tap(sw.router.netns, port_cfg.tap)
                try:
                    sw.holder.put(port_cfg.tap, fd)
                except HolderError as exc:
                    LOG.error("router %s: %s; %s will not survive a restart", sw.router.name, exc,
                              port_cfg.tap)
                LOG.info("router %s: TAP %s opened for port %d", sw.router.name, port_cfg.tap, info.number)
            tap.set_carrier(fd, info.link_up)
            state = tap.configure(sw.router.netns, port_cfg.tap, info.mac, port_cfg.addresses)
            self.relay.add(where, port_cfg.tap, fd, state.mtu)
        except (tap.TapError, OSError) as exc:
            LOG.error("router %s: port %d (%s) not set up: %s", sw.router.name, info.number,
                      port_cfg.tap, exc)

    # --- flows -------------------------------------------------------------------------------

    def flow_read_request(self, dp):
        return codec.flow_stats_request(dp)

    def flows_read(self, dp, stats: list) -> None:
        sw = self._switches[dp.id]
        installed = []
        for entry in stats:
            try:
                installed.append(codec.flow_from_stats(entry))
            except ValueError as exc:
                # A flow with our cookie that we cannot express is stale by definition.
                LOG.warning("router %s: unreadable flow on the switch (%s); deleting it", sw.router.name, exc)
                dp.send_msg(dp.ofproto_parser.OFPFlowMod(
                    dp, cookie=entry.cookie, cookie_mask=0xFFFFFFFFFFFFFFFF, table_id=entry.table_id,
                    command=dp.ofproto.OFPFC_DELETE_STRICT, priority=entry.priority,
                    out_port=dp.ofproto.OFPP_ANY, out_group=dp.ofproto.OFPG_ANY, match=entry.match))
        sw.installed = frozenset(installed)
        self._reconcile(sw)

    def port_views(self, sw: _Switch) -> list[punt.PortView]:
        views = []
        for port_cfg in sw.router.ports:
            info = sw.ports.get(port_cfg.number)
            if info is None:
                continue
            try:
                state = tap.link_state(sw.router.netns, port_cfg.tap)
                addresses = tuple(a for a in state.addresses if not (a.version == 6 and a.ip.is_link_local))
            except tap.TapError:
                addresses = port_cfg.addresses
            views.append(punt.PortView(info.number, mac_to_int(info.mac), addresses))
        return views

    def _reconcile(self, sw: _Switch) -> None:
        dp = sw.datapath
        if dp is None or sw.installed is None:
            return
        desired = punt.plan(self.port_views(sw))
        ops = diff(desired, sw.installed)
        self.send_ops(dp, ops)
        sw.installed = desired
        counts = {op.value: sum(1 for o in ops if o.op is op) for op in Op}
        sw.last_reconcile = counts
        LOG.info("router %s: reconciled %d flows: %d added, %d modified, %d deleted", sw.router.name,
                 len(desired), counts["add"], counts["modify"], counts["delete"])

    @staticmethod
    def send_ops(dp, ops: list[FlowOp]) -> None:
        for op in ops:
            dp.send_msg(codec.flow_mod(dp, op))
        if ops:
            dp.send_msg(dp.ofproto_parser.OFPBarrierRequest(dp))

    # --- status ------------------------------------------------------------------------------

    def _status_loop(self) -> None:
        while not self._status_stop.wait(1.0):
            self._write_status()

    def _write_status(self) -> None:
        for sw in self._switches.values():
            status = {
                "router": sw.router.name, "pid": os.getpid(), "time": time.time(),
                "switch_connected": sw.datapath is not None,
                "switch_ports": {n: {"mac": p.mac, "link_up": p.link_up} for n, p in sw.ports.items()},
                "flows_installed": None if sw.installed is None else len(sw.installed),
                "last_reconcile": sw.last_reconcile, "switch_errors": sw.errors,
                "relay": self.relay.counters.as_dict(),
            }
            path = paths.router_dir(sw.router.name) / "status.json"
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(".tmp")
                tmp.write_text(json.dumps(status, indent=1))
                tmp.replace(path)
            except OSError as exc:
                LOG.debug("cannot write %s: %s", path, exc)
