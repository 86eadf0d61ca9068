"""The daemon's wiring: every configured router (router.py), the TAP relay, and the threads that run them.

The os-ken app (session/app.py) calls in here from os-ken's receive threads. What must happen at
once happens there: TAPs and carrier follow the switch's ports, PacketIns and PacketOuts are
hooked to the relay, barrier replies reach the flow control, and read-back replies are decoded.
Everything else is handed to the router's reconcile thread as a session event.

Threads and what they own:
- os-ken's receive threads: `_current`, the live connection per datapath (under `_lock`), which
  decides whether a connection that ends is the switch's current one; and `_strangers`, the
  connections of switches no router claims (a reload may add their router: roster.py);
- the reconcile thread: each router's session and planner (Router.step), under `_stepping`;
- a reload (the main thread or a control socket thread): `routers`, replaced whole under `_lock`
  when a router is added or removed, so the other threads iterate the one they took;
- the status thread: writes each router's published status once a second;
- the relay's, the watchers', the resolvers' and BIRD's supervisors' own threads.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import replace

from .. import gctune
from ..bridge.ports import PortState
from ..bridge.relay import Relay
from ..config import Config, RouterConfig
from ..reconfig import ConfigChange, added_summary, removed_summary
from ..routing.bird import BirdConfigError
from . import roster, status_file
from .openflow import decode, pipeline, readback, wire
from .openflow.pipeline import owns_group, owns_meter
from .planner import vlans
from .planner.backlog import PASS_ROUTES
from .router import Router
from .session import connection, packetin
from .session.switch import (RoleReplied, Answered, Connected, Counted, Described, Disconnected, Errored, FlowRemoved,
                             FlowsRead, GroupsRead, MetersRead, PortChanged)

LOG = logging.getLogger("taprouter.core")

BURST_GAP = 0.01  # a pass this soon after the last one is part of a burst
BURST_GATHER = 0.002
TICK = 1.0  # the longest the reconcile thread sleeps: sessions retry and resync on time
# Seconds without a switch after which a router's TAPs lose carrier. A switch that reconnects
# (an OVS restart, a flapping link, a restarted daemon) is back well within it, and its flows kept
# forwarding meanwhile (fail-mode secure), so carrier and the kernel's neighbours stay; a switch
# gone for longer (its bridge deleted, the box unplugged) has no ports behind the TAPs, and the
# kernel and BIRD must see them down. (TAPROUTER_SWITCH_GONE shortens it for tests.)
SWITCH_GONE = 30.0


class RouterCore:
    def __init__(self, config: Config):
        self.config = config
        self.relay = Relay()
        self._kick = threading.Event()
        self._stop = threading.Event()
        # A small pass limit makes a small load go in slices (tests).
        self.pass_routes = int(os.environ.get("TAPROUTER_PASS_ROUTES", PASS_ROUTES))
        self.switch_gone = float(os.environ.get("TAPROUTER_SWITCH_GONE", SWITCH_GONE))
        self._ha = config.ha if config.ha.enabled else None
        self._database = config.database
        self.routers: dict[int, Router] = {r.dpid: self._new_router(r) for r in config.routers}
        self._current: dict[int, object] = {}  # dpid -> its live connection (os-ken's Datapath)
        self._strangers: dict[int, object] = {}  # dpid -> the connection of a switch no router claims
        self._lock = threading.Lock()
        self._stepping = threading.Lock()  # held by the reconcile thread over a round of passes
        self._status_lock = threading.Lock()  # a removed router's status file is not written after `down`
        self._farewells: dict[int, threading.Event] = {}  # barrier xid -> a removal waiting for it

    def _new_router(self, config: RouterConfig) -> Router:
        """A router as the daemon runs it, at start or added by a reload: in the HA pair when HA is on."""
        return Router(config, self.relay, self._kick.set, self.pass_routes, ha=self._ha, database=self._database)

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        for router in self.routers.values():
            router.start()
        self.relay.start()
        threading.Thread(target=self._reconcile_loop, name="reconcile", daemon=True).start()
        threading.Thread(target=self._status_loop, name="status", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        self._kick.set()
        for router in self.routers.values():
            router.stop()
        self.relay.stop()
        self._write_status()
        LOG.info("stopped; relay counters %s", self.relay.counters.as_dict())

    def reconfigure(self, change: ConfigChange, config: Config) -> tuple[list[str], list[str]]:
        """Apply a reload's change (reconfig.diff, with no restart in it): routers removed first
        (a router renamed frees its dpid and netns for its new name), then ports and addresses,
        then routers added. Returns what was done, and what failed (a router that did not start
        is left out of the running config, so a reload tries it again)."""
        done, errors, failed = [], [], set()
        for gone in change.removed:
            departure = self.remove_router(gone.name)
            done.append(removed_summary(gone))
            done.extend(departure.summary(gone.name, gone.dpid))
        by_name = {r.name: r for r in self.routers.values()}
        for router_change in change.routers:
            by_name[router_change.name].reconfigure(router_change)
            done.extend(router_change.summary())
        for new in change.added:
            try:
                self.add_router(new)
                done.append(added_summary(new))
            except roster.StartFailed as exc:
                errors.append(f"router {new.name}: not started, nothing of it is left: {exc}")
                failed.add(new.name)
        self.config = replace(config, routers=tuple(r for r in config.routers if r.name not in failed))
        return done, errors

    # --- routers added and removed by a reload (roster.py) -------------------------------------

    def add_router(self, config: RouterConfig) -> Router:
        """Start a router and give it its switch: at once if it is connected already."""
        router = self._new_router(config)
        roster.start(router)
        with self._lock:
            self.routers = {**self.routers, config.dpid: router}
            waiting = self._strangers.pop(config.dpid, None)
        LOG.info("router %s: started (dpid %#x)%s", router.name, config.dpid,
                 "; its switch is connected already" if waiting is not None else "")
        if waiting is not None:
            self.switch_connected(waiting)
        self._kick.set()
        return router

    def remove_router(self, name: str) -> roster.Departure:
        """Take a router out of the daemon: no pass of it after this, its switch emptied of it
        (waiting for the barrier, FAREWELL_WAIT at most), then its parts torn down."""
        with self._stepping:  # a pass of it under way ends first
            with self._lock:
                router = next(r for r in self.routers.values() if r.name == name)
                dpid = router.config.dpid
                self.routers = {d: r for d, r in self.routers.items() if d != dpid}
                dp = self._current.pop(dpid, None)
                if dp is not None:
                    self._strangers[dpid] = dp  # kept, ignored, for a reload that adds it again
        self.relay.attach(dpid, None)
        emptied = roster.empty(dp, router, self._farewells) if dp is not None else None
        with self._status_lock:
            teardown = roster.leave(router, self.relay)
        LOG.info("router %s: removed; %s", name, ", ".join(teardown.removed) or "nothing was left to remove")
        return roster.Departure(emptied, teardown)

    def reload_bird(self) -> None:
        """SIGHUP: reconfigure every BIRD in place; a broken file is refused and logged."""
        for router in self.routers.values():
            if router.bird is None:
                continue
            try:
                router.bird.reload()
            except BirdConfigError as exc:
                LOG.error("router %s: BIRD config not reloaded, BIRD keeps its old one: %s", router.name, exc)

    # --- switch events (os-ken's receive threads) ------------------------------------------------

    def knows(self, dpid: int) -> bool:
        return dpid in self.routers

    def switch_connected(self, dp) -> bool:
        """A switch is up; False if no router has its dpid (kept for a reload that adds one)."""
        with self._lock:
            router = self.routers.get(dp.id)
            if router is None:
                self._strangers[dp.id] = dp
                return False
            self._current[dp.id] = dp
            router.connections += 1
            router.connected_since = time.time()
            router.gone_since = None
        router.hand_over(Connected(dp))
        return True

    def stranger_gone(self, dp) -> None:
        with self._lock:
            if self._strangers.get(dp.id) is dp:
                del self._strangers[dp.id]

    def switch_described(self, dp, ports: list[PortState]) -> None:
        """The switch's ports: TAPs for the configured ones, the relay on this connection."""
        with self._lock:
            router = self.routers.get(dp.id)
            if router is None or self._current.get(dp.id) is not dp:
                return
        have = {p.number for p in ports}
        for port in router.config.ports:
            if port.number not in have:
                LOG.warning("router %s: configured port %d is not on switch %#x", router.name, port.number, dp.id)
        for port in ports:
            router.taps.port_ready(port)
        # PacketIns go to the TAPs before os-ken's receive loop; PacketOuts out past its send queue.
        connection.install(dp, packetin.taker(dp.id, self.relay.to_tap))
        # An HA standby's kernel speaks too (IPv6 RAs, BIRD's hellos), with the master's addresses:
        # its frames are dropped, and the switch would refuse them from a slave anyway.
        self.relay.attach(dp.id, lambda frames: router.relays() and connection.send_now(
            dp, b"".join(wire.packet_out(port, frame) for port, frame in frames)))
        router.hand_over(Described(dp, tuple(ports)))

    def port_changed(self, dp, port: PortState, removed: bool) -> None:
        router = self.routers.get(dp.id)
        if router is None:
            return  # removed by a reload meanwhile
        LOG.info("router %s: port %d %s", router.name, port.number,
                 "removed" if removed else ("up" if port.link_up else "down"))
        router.taps.port_ready(PortState(port.number, port.mac, False) if removed else port)
        router.hand_over(PortChanged(dp, port, removed))

    def flows_read(self, dp, stats: list, xid: int) -> None:
        """Flow stats as readback.RawFlowStats: the policy table's counters when `xid` is a poll's,
        else a read-back, whose route flows decode narrowly, a million of them."""
        router = self.routers.get(dp.id)
        if router is None:
            return
        if xid in router.drop_xids:
            router.drop_xids.discard(xid)
            router.ingress_drops = vlans.drop_counts(readback.counters(stats))  # replaced whole, as punt_drops
            return
        if xid in router.count_xids:
            router.count_xids.discard(xid)
            router.hand_over(Counted(dp, {c & 0xFFFFFFFF: n for c, n in readback.counters(stats).items()
                                          if pipeline.owner_of(c) == pipeline.Owner.POLICY}))
            return
        routes, others, unreadable = readback.decode_all(stats)
        router.hand_over(FlowsRead(dp, routes, tuple(others), tuple(raw.data for raw in unreadable)))

    def flow_removed(self, dp, cookie: int, reason: int) -> None:
        router = self.routers.get(dp.id)
        if router is not None and pipeline.is_ours(cookie) and pipeline.owner_of(cookie) == pipeline.Owner.POLICY:
            router.hand_over(FlowRemoved(dp, cookie, reason))

    def groups_read(self, dp, stats: list) -> None:
        router = self.routers.get(dp.id)
        if router is None:
            return
        groups = {}
        for entry in stats:
            if not owns_group(entry.group_id):
                continue
            try:
                groups[entry.group_id] = decode.group_from_desc(entry)
            except ValueError as exc:
                LOG.warning("router %s: unreadable group %#x (%s); it will be replaced", router.name,
                            entry.group_id, exc)
                groups[entry.group_id] = None
        router.hand_over(GroupsRead(dp, groups))

    def meters_read(self, dp, stats: list) -> None:
        router = self.routers.get(dp.id)
        if router is not None:
            router.hand_over(MetersRead(dp, {m.meter_id: decode.meter_from_stats(m) for m in stats
                                             if owns_meter(m.meter_id)}))

    def meter_stats(self, dp, stats: list) -> None:
        """The punt meters' counters: packets their bands dropped."""
        router = self.routers.get(dp.id)
        if router is None:
            return
        router.punt_drops = {m.meter_id: sum(b.packet_band_count for b in m.band_stats)
                                          for m in stats if pipeline.is_punt_meter(m.meter_id)}

    def barrier_reply(self, dp, xid: int) -> None:
        router = self.routers.get(dp.id)
        if router is None:  # a switch emptied of a removed router (remove_router waits for it)
            answered = self._farewells.get(xid)
            if answered is not None:
                answered.set()
            return
        router.session.in_flight.answered(xid)  # at once: the reconcile thread may be waiting for it
        router.hand_over(Answered(dp, xid))

    def switch_error(self, dp, msg) -> None:
        router = self.routers.get(dp.id)
        if router is None:
            LOG.warning("switch %#x (no router): error type=%d code=%d for xid %d", dp.id, msg.type, msg.code, msg.xid)
            return
        router.hand_over(Errored(dp, msg.type, msg.code, msg.xid, bytes(msg.data or b"")))

    def role_reply(self, dp, role: int, generation: int) -> None:
        router = self.routers.get(dp.id)
        if router is not None:
            router.hand_over(RoleReplied(dp, role, generation))

    def switch_down(self, dp) -> bool:
        """Forget the switch's connection if `dp` is still it; False for one it has replaced
        already (a switch that reconnects before its old connection is found dead)."""
        with self._lock:
            router = self.routers.get(dp.id)
            if router is None or self._current.get(dp.id) is not dp:
                return False
            del self._current[dp.id]
            router.connected_since = None
            router.gone_since = time.monotonic()
        self.relay.attach(dp.id, None)
        router.session.in_flight.reset()  # nothing it was sent will be answered: stop waiting now
        router.hand_over(Disconnected(dp))
        return True

    # --- the reconcile thread ---------------------------------------------------------------------

    def _reconcile_loop(self) -> None:
        last = 0.0
        while not self._stop.is_set():
            self._kick.wait(self._sleep())
            if self._stop.is_set():
                return
            if time.monotonic() - last < BURST_GAP:
                # Changes are streaming in (a table load, a withdrawal at the kernel's pace): gather
                # a few milliseconds of them per pass, as each pass has a fixed cost. A change on an
                # idle router goes out at once.
                self._stop.wait(BURST_GATHER)
            self._kick.clear()
            with self._stepping:
                more = self.step()
            if more:
                self._kick.set()  # the rest of a load: no new change need come to wake us
            last = time.monotonic()

    def step(self) -> bool:
        """One round over the routers (Router.step); True if one has changes left for another pass."""
        more = False
        for router in self.routers.values():
            now = time.monotonic()
            self._carrier_off_if_gone(router, now)
            try:
                with gctune.paused():
                    more |= router.step(now)
            except Exception:
                # What was planned may be half sent: start again from what the switch holds.
                LOG.exception("router %s: reconcile failed; re-reading the switch", router.name)
                router.session.resync(now)
        return more

    def _carrier_off_if_gone(self, router: Router, now: float) -> None:
        """Drop the TAPs' carrier once the router's switch has been gone SWITCH_GONE seconds. Under
        the lock, so a switch connecting meanwhile sets carrier after this (switch_described)."""
        with self._lock:
            gone = router.gone_since
            if gone is None or now - gone < self.switch_gone or router.config.dpid in self._current:
                return
            router.gone_since = None  # once per absence
            dropped = router.taps.carrier_off()
        if dropped:
            LOG.warning("router %s: no switch for %.0f s; its TAPs lose carrier until it connects: %s",
                        router.name, now - gone, ", ".join(dropped))

    def _sleep(self) -> float:
        """Until the earliest session deadline (a resync, a retry), and TICK at most."""
        now = time.monotonic()
        deadlines = [d for r in self.routers.values() if (d := r.session.next_deadline()) is not None]
        return max(0.0, min([TICK, *(d - now for d in deadlines)]))

    # --- status -------------------------------------------------------------------------------

    def _status_loop(self) -> None:
        while not self._stop.wait(1.0):
            self._write_status()

    def _write_status(self) -> None:
        with self._status_lock:
            self._write_statuses()

    def _write_statuses(self) -> None:
        for router in self.routers.values():
            status_file.write(router.name, {**router.status, "relay": self.relay.counters_of(router.config.dpid)})

