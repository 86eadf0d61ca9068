"""Switch ports as the bridge names them: where a frame enters or leaves, and what the switch says of a port."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SwitchPort:
    """Where a TAP's frames enter and leave the switch: a port, untagged (vid 0) or on one VLAN."""

    dpid: int
    port: int
    vid: int = 0


@dataclass(frozen=True)
class PortState:
    """A switch port as the switch describes it (port description, port status)."""

    number: int
    mac: str
    link_up: bool
    speed_kbps: int | None = None  # the port's current speed as the switch reports it (0 or None: unknown)
