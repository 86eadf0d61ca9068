"""One router's switch as the core sees it (RouterCore keeps one per configured router)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..bridge.holder import HolderClient
from ..config import RouterConfig
from ..routing import kernel
from ..routing.mirror import KernelMirror
from ..routing.netlink import Watcher
from .backlog import Backlog
from .fibstate import FibState
from .flows import Flow
from .inflight import InFlight


@dataclass(frozen=True)
class SwitchPortInfo:
    number: int
    mac: str
    link_up: bool


@dataclass
class SwitchState:
    """What the daemon knows of one router's switch: its connection, ports, what it holds, and
    the bookkeeping of reading it back and writing to it. Guarded by RouterCore's lock."""

    router: RouterConfig
    holder: HolderClient
    mirror: KernelMirror
    watcher: Watcher
    resolver: kernel.Resolver
    datapath: object | None = None
    ports: dict[int, SwitchPortInfo] = field(default_factory=dict)
    warned_ports: set[int] = field(default_factory=set)
    # What the switch holds, as read back and then as we wrote it; None until read back.
    # Route flows and groups live in `fib`; `flows` holds the others (punting, FIB hand-over).
    flows: frozenset[Flow] | None = None
    route_flows: dict[int, int] | None = None  # as read back: prefix -> group id or PUNT
    groups: dict | None = None
    meters: dict[int, tuple] | None = None  # meter id -> (pps, burst, flags) as read back
    reading: set[str] = field(default_factory=set)
    fib: FibState = field(default_factory=FibState)
    in_flight: InFlight = field(default_factory=InFlight)  # passes the switch has not answered for
    backlog: Backlog = field(default_factory=Backlog)  # changed prefixes taken, not yet planned
    connecting: object | None = None  # a datapath asked for its ports, not yet described
    planned: frozenset[Flow] | None = None  # the non-route flows last planned, and for which ports
    planned_for: list | None = None
    adopt: bool = False
    errors: int = 0
    backoff: float = 0.5
    bundles: bool = True  # False once the switch refuses an ONF bundle message
    asked: float = 0.0  # when the switch was last asked for its ports or its tables
    counted: float = 0.0  # when the offload counts were last taken
    last_reconcile: dict[str, int] = field(default_factory=dict)
    offload: dict[str, int] = field(default_factory=dict)
