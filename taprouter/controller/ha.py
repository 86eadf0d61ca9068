"""A router's side of the HA pair: its lease (ha/lease.py), its role, and when a takeover has converged.

The lease thread publishes a LeaseState; the reconcile thread alone calls `update` and reads the
role (Router.step). A probe thread asks BIRD, while stale flows are held, whether every BGP and OSPF
protocol is up, and publishes since when (a float, replaced whole).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Callable

from ..config import HaConfig
from ..ha.lease import Lease
from ..ha.roles import Role, bird_converged, decide
from ..routing.birdctl import BirdControl, BirdError

LOG = logging.getLogger("taprouter.ha")

PROBE_EVERY = 0.5


def default_node() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class HaControl:
    def __init__(self, config: HaConfig, database: str, router: str, dpid: int, bird: BirdControl | None,
                 wake: Callable[[], None]) -> None:
        self.config = config
        self.router = router
        self.node = config.node or default_node()
        self.lease = Lease(database, router, dpid, self.node, config.lease_seconds, wake)
        self.bird = bird
        self.role = Role.STARTING
        self.hold_started: float | None = None  # monotonic: since when stale flows are held
        self.bird_up_since: float | None = None  # written by the probe thread
        self.converged_by = ""  # what released the last hold: "bird", "timeout" or "no bird"
        self._stop = threading.Event()

    def start(self) -> None:
        self.lease.start()
        if self.bird is not None:
            threading.Thread(target=self._probe, name=f"ha-probe-{self.router}", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        self.lease.stop()

    def update(self, now: float) -> Role:
        role = decide(self.lease.state, self.role, now, self.config.lease_seconds)
        if role is not self.role:
            log = LOG.warning if role in (Role.MASTER, Role.FENCED) or self.role is Role.MASTER else LOG.info
            log("router %s: HA role %s -> %s (generation %d, lease holder %s)", self.router, self.role.value,
                role.value, self.lease.state.generation, self.lease.state.holder or "-")
            self.role = role
        return role

    def holding(self, now: float) -> None:
        self.hold_started = now
        self.bird_up_since = None

    def converged(self, now: float) -> bool:
        """Whether the held stale flows may be swept: BIRD's protocols all up for settle_seconds, or
        converge_timeout since the hold began."""
        started = self.hold_started
        if started is None:
            return True
        held_for = now - started
        if held_for >= self.config.converge_timeout:
            self.converged_by = "timeout"
        elif self.bird is None:
            if held_for < self.config.settle_seconds:
                return False
            self.converged_by = "no bird"
        else:
            up = self.bird_up_since
            if up is None or now - max(up, started) < self.config.settle_seconds:
                return False
            self.converged_by = "bird"
        self.hold_started = None
        return True

    def _probe(self) -> None:
        while not self._stop.wait(PROBE_EVERY):
            if self.hold_started is None:
                continue
            try:
                protocols = self.bird.protocols()
                ospf = [n.state for n in self.bird.ospf_neighbours()] if any(
                    p.proto == "OSPF" for p in protocols) else []
                up = bird_converged(((p.proto, p.state, p.info) for p in protocols), ospf)
            except (BirdError, OSError):
                up = False
            if not up:
                self.bird_up_since = None
            elif self.bird_up_since is None:
                self.bird_up_since = time.monotonic()
