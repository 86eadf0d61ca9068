"""VLAN sub-interfaces in the config: a port's `vlans:` mapping, VLAN id to its own TAP and addresses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from .configaddr import Interface
from .configyaml import child

MIN_VID = 1
MAX_VID = 4094  # 0 means "no VLAN" (priority tag) and 4095 is reserved (IEEE 802.1Q)
VID_RULE = f"VLAN ids must be integers in {MIN_VID}..{MAX_VID}"
UNTAGGED = 0  # the vid of a port's own, untagged TAP


@dataclass(frozen=True)
class VlanConfig:
    vid: int
    tap: str
    addresses: tuple[Interface, ...]


@dataclass(frozen=True, order=True)
class PortTap:
    """One TAP of a port: its untagged one (vid UNTAGGED) or one VLAN's."""

    number: int  # the switch port's
    vid: int
    tap: str
    addresses: tuple[Interface, ...]

    @property
    def label(self) -> str:
        """How messages name it: "port 1", or "port 1 VLAN 100"."""
        return f"port {self.number}" if self.vid == UNTAGGED else f"port {self.number} VLAN {self.vid}"


Add = Callable[[str, str], None]  # (key, problem)
TapProblem = Callable[[Any], "str | None"]
ParseAddresses = Callable[[str, Any], tuple[Interface, ...]]


def _vid(value: Any) -> int | None:
    """A VLAN id as the file wrote it (an int, or text of digits as a quoted key); None if it is none."""
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not MIN_VID <= value <= MAX_VID:
        return None
    return value


def parse(add: Add, key: str, data: Any, tap_problem: TapProblem,
          parse_addresses: ParseAddresses) -> tuple[VlanConfig, ...]:
    """`key` is the port's key path; `data` its `vlans` value (None: no VLANs)."""
    if data is None:
        return ()
    where = f"{key}.vlans"
    if not isinstance(data, dict):
        add(where, "must be a mapping of VLAN id to {tap, addresses}")
        return ()
    vlans: dict[int, VlanConfig] = {}
    for raw, item in data.items():
        vid = _vid(raw)
        vkey = child(where, raw)
        if vid is None:
            add(vkey, f"{VID_RULE}, not {raw!r}")
            continue
        if vid in vlans:
            # From a file the YAML reader refuses a key written twice; 100 and "100" still reach here.
            add(vkey, f"VLAN {vid} is given twice")
            continue
        if not isinstance(item, dict):
            add(vkey, "must be a mapping with 'tap' and 'addresses'")
            continue
        for name in item:
            if name not in ("tap", "addresses"):
                add(child(vkey, name), "unknown key (allowed: addresses, tap)")
        tap = item.get("tap")
        problem = tap_problem(tap)
        if problem:
            add(f"{vkey}.tap", problem)
            continue
        vlans[vid] = VlanConfig(vid, tap, parse_addresses(f"{vkey}.addresses", item.get("addresses")))
    return tuple(sorted(vlans.values(), key=lambda v: v.vid))


def taps(number: int, tap: str | None, addresses: tuple[Interface, ...],
         vlans: tuple[VlanConfig, ...]) -> tuple[PortTap, ...]:
    """A port's TAPs: the untagged one first (when it has one), then each VLAN's by id."""
    own = (PortTap(number, UNTAGGED, tap, addresses),) if tap else ()
    return own + tuple(PortTap(number, v.vid, v.tap, v.addresses) for v in vlans)


def key_of(router: str, tap: PortTap) -> str:
    """The config key of a TAP's settings."""
    base = f"routers.{router}.ports.{tap.number}"
    return base if tap.vid == UNTAGGED else f"{base}.vlans.{tap.vid}"
