"""One configured router, its parts joined: TAPs, kernel mirror, BIRD, planner and switch session.

Who owns what (each is written down in its own module too):
- the netlink watcher's thread writes the mirror, which has its own lock;
- os-ken's receive thread sets up TAPs (TapSet, its own lock) and hands every other switch
  event to `events`, a deque, for the reconcile thread;
- the reconcile thread alone runs `step`: it owns the session and the planner, and publishes
  `status`, a dict it replaces whole, for the status thread to write out;
- the resolver's thread runs `ip neigh` for the next hops a pass hands it.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Callable

from .. import gctune, paths
from ..bridge.holder import HolderClient
from ..bridge.relay import Relay
from ..bridge.taps import TapSet
from ..config import RouterConfig
from ..mac import mac_to_int
from ..routing import kernel
from ..routing.bird import BirdSupervisor
from ..routing.mirror import KernelMirror
from ..routing.netlink import Watcher
from .planner.reconcile import KernelView, Pass, Planner, PortInput, SwitchView
from .session.switch import SessionEvent, SwitchSession
from .session.tls import peer

LOG = logging.getLogger("taprouter.core")

OFFLOAD_RECOUNT = 1.0  # seconds between recounts of the FIB for status (a walk over the hop sets)


class Router:
    def __init__(self, config: RouterConfig, relay: Relay, wake: Callable[[], None], pass_routes: int) -> None:
        self.config = config
        self.name = config.name
        self.holder = HolderClient(paths.router_dir(config.name))
        self.taps = TapSet(config, self.holder, relay)
        self.mirror = KernelMirror(wake)
        self.watcher = Watcher(config.netns, self.mirror)
        self.resolver = kernel.Resolver(config.name, config.netns)
        self.bird = (BirdSupervisor(config.name, config.netns, config.bird.config, paths.router_dir(config.name))
                     if config.bird is not None else None)
        self.planner = Planner(pass_routes)
        self.session = SwitchSession(config.name)
        self.events: deque[SessionEvent] = deque()
        self._wake = wake
        self._planned = False  # a pass has gone out since the last read-back: counts are the switch's
        self._offload: dict[str, int] = {}
        self._counted = 0.0
        self._last_reconcile: dict[str, int] = {}
        self.status: dict = self._status()

    # --- lifecycle (main thread) --------------------------------------------------------------

    def start(self) -> None:
        """The netns and its sysctls, the TAPs a previous daemon left with the holder (before any
        switch connects), the watcher, the resolver and BIRD."""
        kernel.prepare(self.name, self.config.netns)
        self.taps.adopt()
        self.watcher.start()
        self.resolver.start()
        if self.bird is not None:
            self.bird.start()

    def stop(self) -> None:
        self.watcher.stop()
        self.resolver.stop()
        if self.bird is not None:
            self.bird.stop_supervising()  # BIRD keeps running: its sessions must outlive our restart

    def hand_over(self, event: SessionEvent) -> None:
        """From os-ken's thread: an event for the reconcile thread."""
        self.events.append(event)
        self._wake()

    # --- the reconcile thread -----------------------------------------------------------------

    def step(self, now: float) -> bool:
        """Take the session's events, then, if the switch is in sync, one pass. Returns whether
        changes are left for another pass (the rest of a table load)."""
        session = self.session
        events = self.events
        while events:
            event = events.popleft()
            session.handle(event, now)
        session.tick(now)
        if not session.synced:
            self._planned = False
            self.status = self._status()
            return False
        if not self.watcher.ready.is_set():
            return False  # the dump is not in yet; planning now would delete every route flow
        if not session.in_flight.room():
            LOG.warning("router %s: the switch has not answered a barrier in %.0f s; sending anyway", self.name,
                        session.in_flight.wait)
        started = time.monotonic()
        mirror = self.mirror
        state = mirror.snapshot()
        kernel_view = KernelView(mirror.take_changes(), mirror.routes, mirror.items, state)
        plan = self.planner.plan(kernel_view, SwitchView(self._ports(), session.take_read_back()), now)
        planned = time.monotonic()
        if plan:
            session.send(plan)
        written = time.monotonic()
        self._planned = True
        self.resolver.request(plan.unresolved, state.links)
        self._log(plan, started, planned, written)
        self.status = self._status()
        if plan.full:
            gctune.release()  # a read-back's or a re-dump's memory, back to the system
        return len(self.planner.backlog) > 0

    def _ports(self) -> list[PortInput]:
        ports = self.session.ports
        return [PortInput(p.number, p.tap, mac_to_int(info.mac), info.link_up)
                for p in self.config.ports if (info := ports.get(p.number)) is not None]

    def _log(self, plan: Pass, started: float, planned: float, written: float) -> None:
        counts = plan.counts()
        self._last_reconcile = counts
        if any(counts.values()) or plan.adopted or plan.full:
            # Sending (encoding, then writing) blocks while the switch works through what came
            # before, so a large pass's time is mostly the switch's; the split says which side a
            # slow pass waited on.
            LOG.info("router %s: reconciled %d flows, %d groups in %.1f ms: %d added, %d modified, "
                     "%d deleted, %d group changes (planning %.1f ms, sending %.1f ms)", self.name,
                     self.planner.flows_planned(), self.planner.groups_planned(), (written - started) * 1000,
                     counts["add"], counts["modify"], counts["delete"], counts["groups"],
                     (planned - started) * 1000, (written - planned) * 1000)

    def _status(self) -> dict:
        """What `taprouter status` shows of the switch, as of now (the reconcile thread's view)."""
        session, dp = self.session, self.session.dp
        now = time.monotonic()
        if self._planned and (not self._offload or now - self._counted > OFFLOAD_RECOUNT):
            self._offload = self.planner.offload(len(self.mirror.routes))
            self._counted = now
        return {
            "switch_connected": dp is not None,
            # Where the switch connected from, and over what: "tls" or "tcp".
            "switch_address": peer(dp.address) if dp is not None else None,
            "switch_transport": None if dp is None else "tls" if getattr(dp.socket, "over_tls", False) else "tcp",
            "switch_ports": {n: {"mac": p.mac, "link_up": p.link_up} for n, p in session.ports.items()},
            "flows_installed": self.planner.flows_planned() if self._planned else None,
            "groups_installed": self.planner.groups_planned() if self._planned else None,
            "offload": self._offload if self._planned else {},
            "last_reconcile": self._last_reconcile, "switch_errors": session.errors,
            "netlink_resyncs": self.watcher.resyncs,
        }
