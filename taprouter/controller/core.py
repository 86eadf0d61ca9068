"""Per-switch router state: sets up TAPs for ports, plans flows and groups, and reconciles them.

The os-ken app calls in here with decoded events from its thread; kernel
changes arrive from the netlink thread. Both only update state and wake the
one reconcile thread, which alone writes flows and groups to the switches.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from .. import gctune, paths
from ..bridge import netns, tap
from ..bridge.holder import HolderClient, HolderError
from ..bridge.ports import PortMap, SwitchPort
from ..bridge.relay import Relay
from ..config import Config
from ..routing import kernel
from ..routing.bird import BirdConfigError, BirdSupervisor
from ..routing.mirror import KernelMirror
from ..routing.model import KernelState
from ..routing.netlink import Watcher
from . import codec, connection, desired, fib, packetin, punt, readback, sending, status_file, wire
from .flows import mac_to_int
from .pipeline import METERS, owns_group
from .reconcile import Op, diff
from .switchstate import SwitchPortInfo, SwitchState

LOG = logging.getLogger("taprouter.core")

RESYNC_BACKOFF_MAX = 30.0
# A request the switch has not answered in this long is asked again (replies have been seen to
# go missing around a reconnection); a million flows read back in well under a minute.
PORT_DESC_RETRY = 5.0
BURST_GAP = 0.01  # a pass this soon after the last one is part of a burst
BURST_GATHER = 0.002
READ_BACK_RETRY = 120.0


class RouterCore:
    def __init__(self, config: Config):
        self.config = config
        self.relay = Relay()
        self.port_map = PortMap(config)
        self._kick = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._switches: dict[int, SwitchState] = {}
        self.birds: dict[str, BirdSupervisor] = {
            r.name: BirdSupervisor(r.name, r.netns, r.bird.config, paths.router_dir(r.name))
            for r in config.routers if r.bird is not None}
        for r in config.routers:
            mirror = KernelMirror(self._kick.set)
            self._switches[r.dpid] = SwitchState(r, HolderClient(paths.router_dir(r.name)), mirror,
                                             Watcher(r.netns, mirror), kernel.Resolver(r.name, r.netns))

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Adopt the TAP fds a previous daemon left with the holder, before any switch connects."""
        for sw in self._switches.values():
            router = sw.router
            if netns.ensure(router.netns):
                LOG.info("router %s: created netns %s", router.name, router.netns)
            kernel.set_router_sysctls(router.name, router.netns)
            sw.holder.start()
            held = sw.holder.get()
            for name, fd in held.items():
                entry = self.port_map.by_tap(router.netns, name)
                if entry is None:
                    LOG.info("router %s: holder had %s, no longer configured; releasing it", router.name, name)
                    os.close(fd)
                    sw.holder.drop(name)
                    continue
                try:
                    state = tap.link_state(router.netns, name)
                except tap.TapError:
                    # The netns was removed and recreated under the holder: that TAP is gone.
                    LOG.warning("router %s: holder's %s is not in netns %s; releasing it", router.name,
                                name, router.netns)
                    os.close(fd)
                    sw.holder.drop(name)
                    continue
                self.relay.add(entry.switch_port, name, fd, state.mtu)
            if held:
                LOG.info("router %s: re-adopted %d TAP(s) from the holder: %s",
                         router.name, len(held), ", ".join(sorted(held)))
            sw.watcher.start()
            if router.name in self.birds:
                self.birds[router.name].start()
        self.relay.start()
        threading.Thread(target=self._reconcile_loop, name="reconcile", daemon=True).start()
        threading.Thread(target=self._status_loop, name="status", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        self._kick.set()
        for sw in self._switches.values():
            sw.watcher.stop()
        for bird in self.birds.values():
            bird.stop_supervising()  # BIRD keeps running: its sessions must outlive our restart
        self.relay.stop()
        self._write_status()
        LOG.info("stopped; relay counters %s", self.relay.counters.as_dict())

    def reload_bird(self) -> None:
        """SIGHUP: reconfigure every BIRD in place; a broken file is refused and logged."""
        for name, bird in self.birds.items():
            try:
                bird.reload()
            except BirdConfigError as exc:
                LOG.error("router %s: BIRD config not reloaded, BIRD keeps its old one: %s", name, exc)

    def knows(self, dpid: int) -> bool:
        return dpid in self._switches

    def barrier_reply(self, dpid: int, xid: int) -> None:
        self._switches[dpid].in_flight.answered(xid)

    # --- switch events (os-ken's thread) -----------------------------------------------------

    def switch_connected(self, dp) -> None:
        """The OpenFlow session is up: ask for the ports (switch_up follows with the answer)."""
        sw = self._switches[dp.id]
        with self._lock:
            sw.connecting, sw.asked = dp, time.monotonic()
        dp.send_msg(dp.ofproto_parser.OFPPortDescStatsRequest(dp, 0))

    def _ask_again(self) -> None:
        """Re-send a port description or read-back request the switch left unanswered."""
        now = time.monotonic()
        for sw in self._switches.values():
            with self._lock:
                connecting, reading, dp = sw.connecting, bool(sw.reading), sw.datapath
                waited = now - sw.asked
            if connecting is not None and waited > PORT_DESC_RETRY:
                LOG.warning("switch %#x has not described its ports in %.0f s; asking again", connecting.id, waited)
                self.switch_connected(connecting)
            elif dp is not None and reading and waited > READ_BACK_RETRY:
                LOG.warning("router %s: the switch has not returned its %s in %.0f s; reading it again",
                            sw.router.name, ", ".join(sorted(sw.reading)), waited)
                with self._lock:
                    sw.asked = now
                self._read_back(dp)

    def switch_up(self, dp, ports: list[SwitchPortInfo]) -> None:
        sw = self._switches[dp.id]
        with self._lock:
            sw.connecting, sw.asked = None, time.monotonic()
            sw.datapath = dp
            sw.in_flight.reset()
            sw.flows = sw.groups = sw.meters = None
            sw.reading = {"flows", "groups", "meters"}
            sw.adopt = True
            sw.ports = {p.number: p for p in ports}
        for port in sw.router.ports:
            if port.number not in sw.ports:
                LOG.warning("router %s: configured port %d is not on switch %#x", sw.router.name,
                            port.number, dp.id)
        for info in ports:
            self._port_ready(sw, info)
        # PacketIns go to the TAPs before os-ken's receive loop; PacketOuts out past its send queue.
        connection.install(dp, packetin.taker(dp.id, self.relay.to_tap))
        self.relay.attach(dp.id, lambda frames: connection.send_now(dp, b"".join(codec.packet_out(port, frame)
                                                                             for port, frame in frames)))
        self._read_back(dp)

    @staticmethod
    def _read_back(dp) -> None:
        for msg in codec.read_back_requests(dp):
            dp.send_msg(msg)

    def switch_down(self, dp) -> bool:
        """Forget the switch's connection if `dp` is still it; False for one it has replaced
        already (a switch that reconnects before its old connection is found dead)."""
        sw = self._switches[dp.id]
        with self._lock:
            if dp is not sw.datapath and dp is not sw.connecting:
                return False
            sw.datapath = sw.connecting = None
            sw.flows = sw.groups = sw.meters = None
            sw.in_flight.reset()
        self.relay.attach(dp.id, None)
        return True

    def port_changed(self, dp, info: SwitchPortInfo, removed: bool) -> None:
        sw = self._switches[dp.id]
        if removed:
            info = SwitchPortInfo(info.number, info.mac, False)
        with self._lock:
            if removed:
                sw.ports.pop(info.number, None)
            else:
                sw.ports[info.number] = info
        LOG.info("router %s: port %d %s", sw.router.name, info.number,
                 "removed" if removed else ("up" if info.link_up else "down"))
        self._port_ready(sw, info)
        self._kick.set()

    def switch_error(self, dp, msg) -> None:
        """Log the error, then re-read the switch and reconcile again, with back-off."""
        sw = self._switches.get(dp.id)
        LOG.error("switch %#x returned an error: type=%d code=%d for xid %d; re-reading the switch",
                  dp.id, msg.type, msg.code, msg.xid)
        if sw is None:
            return
        if sw.bundles and wire.is_bundle_message(bytes(msg.data or b"")):
            # Not every switch has the ONF bundle extension: deletes then go one flow_mod each.
            LOG.warning("switch %#x refuses bundles; route deletes go as single flow_mods", dp.id)
            sw.bundles = False
        sw.errors += 1
        self._resync(sw, dp)

    def _resync(self, sw: SwitchState, dp) -> None:
        """Read the switch back and reconcile from what it holds, after a back-off."""
        delay = sw.backoff
        sw.backoff = min(sw.backoff * 2, RESYNC_BACKOFF_MAX)

        def resync():
            with self._lock:
                if sw.datapath is not dp or sw.reading:
                    return
                sw.flows = sw.groups = sw.meters = None
                sw.reading = {"flows", "groups", "meters"}
                sw.adopt = True
                sw.asked = time.monotonic()
            self._read_back(dp)

        threading.Timer(delay, resync).start()

    def flows_read(self, dp, stats: list) -> None:
        """Flow stats as readback.RawFlowStats: route flows decode narrowly, a million of them."""
        sw = self._switches[dp.id]
        routes, others, unreadable = readback.decode_all(stats)
        for raw in unreadable:
            # A flow with our cookie that we cannot express is stale by definition.
            try:
                entry = readback.parse(raw.data)
            except ValueError:
                LOG.error("router %s: malformed flow entry from the switch, left alone: %s", sw.router.name,
                          raw.data.hex())
                continue
            LOG.warning("router %s: unreadable flow on the switch (%s); deleting it", sw.router.name, entry)
            dp.send_msg(dp.ofproto_parser.OFPFlowMod(
                dp, cookie=entry.cookie, cookie_mask=0xFFFFFFFFFFFFFFFF, table_id=entry.table_id,
                command=dp.ofproto.OFPFC_DELETE_STRICT, priority=entry.priority,
                out_port=dp.ofproto.OFPP_ANY, out_group=dp.ofproto.OFPG_ANY, match=entry.match))
        self._read_done(sw, "flows", flows=frozenset(others), route_flows=routes)

    def groups_read(self, dp, stats: list) -> None:
        sw = self._switches[dp.id]
        groups = {}
        for entry in stats:
            if not owns_group(entry.group_id):
                continue
            try:
                groups[entry.group_id] = codec.group_from_desc(entry)
            except ValueError as exc:
                LOG.warning("router %s: unreadable group %#x (%s); it will be replaced", sw.router.name,
                            entry.group_id, exc)
                groups[entry.group_id] = None
        self._read_done(sw, "groups", groups=groups)

    def meters_read(self, dp, stats: list) -> None:
        sw = self._switches[dp.id]
        self._read_done(sw, "meters", meters={m.meter_id: codec.meter_from_stats(m) for m in stats
                                              if m.meter_id in METERS})

    def _read_done(self, sw: SwitchState, part: str, **values) -> None:
        with self._lock:
            for key, value in values.items():
                setattr(sw, key, value)
            sw.reading.discard(part)
        if not sw.reading:
            self._kick.set()

    # --- TAPs ----------------------------------------------------------------------------------

    def _port_ready(self, sw: SwitchState, info: SwitchPortInfo) -> None:
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

    # --- reconciling (the reconcile thread) --------------------------------------------------

    def _reconcile_loop(self) -> None:
        last = 0.0
        while not self._stop.is_set():
            self._kick.wait()
            if self._stop.is_set():
                return
            if time.monotonic() - last < BURST_GAP:
                # Changes are streaming in (a table load, a withdrawal at the kernel's pace): gather
                # a few milliseconds of them per pass, as each pass has a fixed cost. A change on an
                # idle router goes out at once.
                self._stop.wait(BURST_GATHER)
            self._kick.clear()
            for sw in self._switches.values():
                try:
                    with gctune.paused():
                        self._reconcile(sw)
                except Exception:
                    # What was planned may be half sent: start again from what the switch holds.
                    LOG.exception("router %s: reconcile failed; re-reading the switch", sw.router.name)
                    if sw.datapath is not None:
                        self._resync(sw, sw.datapath)
            last = time.monotonic()
            if any(len(sw.backlog) for sw in self._switches.values()):
                self._kick.set()  # the rest of a load: no new change need come to wake us

    def _bindings(self, sw: SwitchState, state: KernelState) -> tuple[list[punt.PortView], dict[int, fib.PortBinding]]:
        views, bindings = [], {}
        for port_cfg in sw.router.ports:
            info = sw.ports.get(port_cfg.number)
            link = state.link_by_name(port_cfg.tap)
            if info is None or link is None:
                continue
            mac = mac_to_int(info.mac)
            addresses = tuple(sorted((a.interface for a in state.addresses if a.ifindex == link.index
                                      and not (a.interface.version == 6 and a.interface.ip.is_link_local)),
                                     key=str))
            views.append(punt.PortView(info.number, mac, addresses))
            bindings[link.index] = fib.PortBinding(link.index, info.number, mac, info.link_up)
        return views, bindings

    def _reconcile(self, sw: SwitchState) -> None:
        with self._lock:
            dp = sw.datapath
            if dp is None or sw.reading or sw.flows is None or sw.groups is None or sw.meters is None:
                sw.backlog.clear()  # the switch is being read back: a full pass follows
                return
            installed_flows, installed_meters, adopt = sw.flows, dict(sw.meters or {}), sw.adopt
            if adopt:
                installed_routes, installed_groups = sw.route_flows or {}, dict(sw.groups)
        if not sw.watcher.ready.is_set():
            return  # the dump is not in yet; planning now would delete every route flow
        if not sw.in_flight.room():
            LOG.warning("router %s: the switch has not answered a barrier in %.0f s; sending anyway",
                        sw.router.name, sw.in_flight.wait)
        started = time.monotonic()
        if adopt:
            sw.fib.adopt(installed_routes, installed_groups)
            with self._lock:
                sw.adopt, sw.route_flows = False, None
        taken = sw.mirror.take_changes()
        sw.backlog.add(taken.routes, taken.gone, taken.withdrawn)
        changed, gone = sw.backlog.take()  # a load's routes a slice at a time (backlog.py)
        state = sw.mirror.snapshot()
        views, bindings = self._bindings(sw, state)
        changes = sw.fib.sync(sw.mirror.routes, state, bindings, changed, taken.other, taken.full, sw.mirror.items,
                              gone=gone)
        if changes.full:
            sw.backlog.clear()  # it looked at every route
        if sw.planned_for == views and installed_flows is sw.planned:
            want, flow_ops = installed_flows, []  # ports and addresses as last time: nothing to redo
        else:
            want = desired.build(views, with_fib=True)
            flow_ops = diff(want, installed_flows)
        for meter_id, pps in METERS.items():
            # Meters before the flows that use them; Open vSwitch refuses a flow naming a missing one.
            if installed_meters.get(meter_id) != codec.meter_spec(pps):
                dp.send_msg(codec.meter_mod(dp, meter_id, pps, meter_id in installed_meters))
                installed_meters[meter_id] = codec.meter_spec(pps)
        planned = time.monotonic()
        if changes or flow_ops:
            sw.in_flight.sent(sending.send(dp, changes, flow_ops, sw.bundles))
        written = time.monotonic()
        with self._lock:
            if sw.datapath is dp and not sw.reading:
                sw.flows, sw.meters = want, installed_meters
                sw.planned, sw.planned_for = want, views
        sw.resolver.resolve(sw.fib.unresolved, state.links)
        if changes.full or time.monotonic() - sw.counted > 1.0:  # for status: a walk over the groups
            sw.offload = {"kernel_routes": len(sw.mirror.routes), **sw.fib.counts()}
            sw.counted = time.monotonic()
        counts = {op.value: sum(1 for o in flow_ops if o.op is op) + routes
                  for op, routes in zip((Op.ADD, Op.MODIFY, Op.DELETE), changes.counts)}
        counts["delete"] += changes.deleted_with_groups
        counts["groups"] = len(changes.group_upserts) + len(changes.group_deletes)
        sw.last_reconcile = counts
        if any(counts.values()) or adopt or changes.full:
            # Sending (encoding, then writing) blocks while the switch works through what came
            # before, so a large pass's time is mostly the switch's; the split says which side a
            # slow pass waited on.
            LOG.info("router %s: reconciled %d flows, %d groups in %.1f ms: %d added, %d modified, "
                     "%d deleted, %d group changes (planning %.1f ms, sending %.1f ms)", sw.router.name,
                     len(want) + len(sw.fib.flows), len(sw.fib.switch_groups), (time.monotonic() - started) * 1000,
                     counts["add"], counts["modify"], counts["delete"], counts["groups"],
                     (planned - started) * 1000, (written - planned) * 1000)
        if changes.full:
            gctune.release()  # after a restart's or a resync's read-back (gctune.release)

    # --- status ------------------------------------------------------------------------------

    def _status_loop(self) -> None:
        while not self._stop.wait(1.0):
            self._write_status()
            self._ask_again()

    def _write_status(self) -> None:
        for sw in self._switches.values():
            status_file.write(sw.router.name, status_file.of_switch(sw, self.relay.counters.as_dict()))
