"""VLANs in a lab: a router port's `vlans:` in the topology file, links to `ROUTER:PORT.VID`, and
the access switch that tags their frames.

The kernel has no 802.1Q module, so no namespace can tag a frame. As in netns_tests/vlanlab.py, a
router port with VLANs is wired to an access switch of its own (a standalone Open vSwitch bridge)
by a veth trunk; each link to one of its VLANs is an access port (`tag=VID`) of that switch, and a
link to the port's untagged TAP an access port of a native VLAN the trunk carries untagged. Each
VLAN of a port (and its untagged side) is so a LAN segment: several links may share it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # topology imports this module
    from .topology import Endpoint, RouterPort, Topology

MIN_VID = 1
MAX_VID = 4094

Interface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
Add = Callable[[str, str], None]  # (key, problem)
ParseAddresses = Callable[[str, Any], "tuple[Interface, ...]"]


@dataclass(frozen=True)
class RouterVlan:
    vid: int
    tap: str  # in the router's netns: the user's BIRD file names it
    addresses: tuple[Interface, ...]


def default_tap(port: int, vid: int) -> str:
    return f"eth{port}.{vid}"  # at most "eth65280.4094": 13 characters


def parse(add: Add, key: str, port: int, data: Any, parse_addresses: ParseAddresses) -> tuple[RouterVlan, ...]:
    """A router port's `vlans:` (`key` is the port's key): VID to a list of addresses, or to
    {tap, addresses}."""
    if data is None:
        return ()
    where = f"{key}.vlans"
    if not isinstance(data, dict) or not data:
        add(where, "must be a mapping of VLAN id to addresses (or to {tap, addresses})")
        return ()
    vlans = []
    for vid, settings in data.items():
        vkey = f"{where}.{vid}"
        if not isinstance(vid, int) or isinstance(vid, bool) or not MIN_VID <= vid <= MAX_VID:
            add(vkey, f"a VLAN id is an integer in {MIN_VID}..{MAX_VID}")
            continue
        if isinstance(settings, list) or settings is None:
            settings = {"addresses": settings or []}
        if not isinstance(settings, dict):
            add(vkey, "must be a list of addresses or a mapping with addresses (and tap)")
            continue
        for name in settings:
            if name not in ("addresses", "tap"):
                add(f"{vkey}.{name}", "unknown key (expected one of: addresses, tap)")
        tap = settings.get("tap", default_tap(port, vid))
        vlans.append(RouterVlan(vid, str(tap), parse_addresses(f"{vkey}.addresses", settings.get("addresses"))))
    return tuple(sorted(vlans, key=lambda v: v.vid))


def port_tap(settings: dict, number: int, vlans: tuple[RouterVlan, ...]) -> str | None:
    """The port's untagged TAP; None for a port with VLANs and neither addresses nor a tap: a
    trunk of tagged VLANs only."""
    if vlans and "tap" not in settings and "addresses" not in settings:
        return None
    return str(settings.get("tap", f"eth{number}"))


def check_taps(add: Add, key: str, number: int, tap: str | None, vlans: tuple[RouterVlan, ...],
               taps: dict[str, int], tap_ok: Callable[[str], bool]) -> None:
    """Each TAP of the port a valid name used once in the router (`taps`: name to port so far)."""
    for tkey, name in ([(f"{key}.tap", tap)] if tap is not None else []) + [
            (f"{key}.vlans.{v.vid}.tap", v.tap) for v in vlans]:
        if not tap_ok(name):
            add(tkey, f"{name!r} is not an interface name of at most 15 characters")
        elif name in taps:
            add(tkey, f"{name!r} is also the TAP of port {taps[name]}")
        taps.setdefault(name, number)


def end_problem(node: str, port: RouterPort, vid: int | None) -> str | None:
    """Why a link cannot end on router `node`'s `port`, VLAN `vid` (None: untagged); None if it can."""
    if vid is not None and port.vlan(vid) is None:
        return (f"router {node}'s port {port.number} has no VLAN {vid} (its VLANs: "
                f"{', '.join(map(str, port.vids)) or 'none'}; see routers.{node}.ports.{port.number}.vlans)")
    if vid is None and port.tap is None:
        return (f"router {node}'s port {port.number} carries VLANs only ({', '.join(map(str, port.vids))}): "
                f"link to {node}:{port.number}.VID")
    return None


def on_trunk(topology: Topology, end: Endpoint) -> bool:
    """Whether a link's end is a router port with VLANs: behind an access switch, a LAN per VLAN."""
    return end.kind == "router" and bool(topology.router(end.node).port(end.port).vlans)


def split_port(where: str) -> tuple[int, int | None] | None:
    """`1` or `1.100` (the part of `ROUTER:1.100` after the colon) as (port, vid); None if neither."""
    port, dot, vid = where.partition(".")
    if not port.isdigit() or (dot and not vid.isdigit()):
        return None
    return int(port), int(vid) if dot else None


def native_vid(vids: tuple[int, ...]) -> int:
    """The access switch's VLAN for the trunk's untagged frames: one the port does not carry."""
    return next(v for v in range(MIN_VID, MAX_VID + 1) if v not in vids)


def trunk_settings(vids: tuple[int, ...], untagged: bool) -> tuple[str, ...]:
    """ovs-vsctl `set port` settings of the access switch's end of a trunk."""
    carried = sorted(vids + ((native_vid(vids),) if untagged else ()))
    mode = ("vlan_mode=native-untagged", f"tag={native_vid(vids)}") if untagged else ("vlan_mode=trunk",)
    return (*mode, "trunks=" + ",".join(str(v) for v in carried))


def access_settings(vids: tuple[int, ...], vid: int | None) -> tuple[str, ...]:
    """Settings of an access port of VLAN `vid` (None: the port's untagged side)."""
    return (f"tag={native_vid(vids) if vid is None else vid}",)
