"""`taprouter status`: what the kernel, the holder and the daemon say about each router."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

from . import paths
from . import netns
from .bridge import tap
from .bridge.holder import HolderClient
from .config import Config, RouterConfig
from .routing.bird import BirdPaths, running_pid
from .routing.birdctl import BirdControl, BirdError


@dataclass(frozen=True)
class PortStatus:
    port: int
    tap: str
    present: bool
    carrier: bool
    up: bool
    mac: str | None
    addresses: tuple[str, ...]


@dataclass(frozen=True)
class RouterStatus:
    router: str
    dpid: str
    netns: str
    netns_present: bool
    holder_pid: int | None
    daemon: dict | None  # the daemon's own status file, if it is running
    ports: tuple[PortStatus, ...]
    bird: dict | None = None  # pid, protocols and OSPF neighbours, in BIRD's own words


def _daemon_status(router: RouterConfig) -> dict | None:
    path = paths.router_dir(router.name) / "status.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    try:
        os.kill(data["pid"], 0)
    except (ProcessLookupError, KeyError, TypeError):
        return None
    return data


def _bird_status(router: RouterConfig) -> dict | None:
    if router.bird is None:
        return None
    bird_paths = BirdPaths.under(paths.router_dir(router.name))
    result: dict = {"config": str(router.bird.config), "pid": running_pid(bird_paths), "protocols": [],
                    "ospf_neighbours": [], "error": None}
    if result["pid"] is None:
        result["error"] = "BIRD is not running"
        return result
    control = BirdControl(str(bird_paths.socket))
    try:
        result["protocols"] = [asdict(p) for p in control.protocols()]
        if any(p["proto"] == "OSPF" for p in result["protocols"]):
            result["ospf_neighbours"] = [asdict(n) for n in control.ospf_neighbours()]
    except BirdError as exc:
        result["error"] = str(exc)
    return result


def collect(config: Config) -> list[RouterStatus]:
    result = []
    for router in config.routers:
        present = netns.exists(router.netns)
        ports = []
        for port in router.ports:
            try:
                state = tap.link_state(router.netns, port.tap) if present else None
            except tap.TapError:
                state = None
            ports.append(PortStatus(
                port=port.number, tap=port.tap, present=state is not None,
                carrier=bool(state and state.carrier), up=bool(state and state.up),
                mac=state.mac if state else None,
                addresses=tuple(str(a) for a in state.addresses) if state else ()))
        result.append(RouterStatus(
            router=router.name, dpid=f"{router.dpid:#x}", netns=router.netns, netns_present=present,
            holder_pid=HolderClient(paths.router_dir(router.name)).alive(),
            daemon=_daemon_status(router), ports=tuple(ports), bird=_bird_status(router)))
    return result


def to_json(statuses: list[RouterStatus]) -> str:
    return json.dumps([asdict(s) for s in statuses], indent=2)


def to_text(statuses: list[RouterStatus]) -> str:
    lines = []
    for s in statuses:
        daemon = s.daemon
        if daemon is None:
            state = "daemon not running"
        elif daemon.get("switch_connected"):
            via = (f" from {daemon['switch_address']} over {daemon['switch_transport'].upper()}"
                   if daemon.get("switch_address") and daemon.get("switch_transport") else "")
            state = (f"switch connected{via}, {daemon.get('flows_installed')} flows and "
                     f"{daemon.get('groups_installed')} groups installed")
        else:
            state = "daemon running, switch not connected"
        lines.append(f"router {s.router} (dpid {s.dpid}, netns {s.netns}"
                     f"{'' if s.netns_present else ' MISSING'}): {state}")
        lines.append(f"  TAP holder: {'pid ' + str(s.holder_pid) if s.holder_pid else 'not running'}")
        for p in s.ports:
            if not p.present:
                lines.append(f"  port {p.port}: {p.tap} missing")
                continue
            link = ("UP" if p.up else "DOWN") + (", carrier" if p.carrier else ", NO-CARRIER")
            lines.append(f"  port {p.port}: {p.tap} {p.mac} {link} {' '.join(p.addresses)}")
        if s.bird is not None:
            bird = s.bird
            lines.append(f"  BIRD: {'pid ' + str(bird['pid']) if bird['pid'] else 'not running'}"
                         f" ({bird['config']}){'; ' + bird['error'] if bird['error'] else ''}")
            for p in bird["protocols"]:
                detail = [p["info"]] if p["info"] else []
                if p["routes_imported"] is not None:
                    detail.append(f"{p['routes_imported']} routes imported")
                lines.append(f"    {p['name']:<12} {p['proto']:<8} {p['state']:<6} since {p['since']:<13} "
                             + ", ".join(detail))
            for n in bird["ospf_neighbours"]:
                lines.append(f"    OSPF neighbour {n['router_id']} {n['state']} on {n['interface']} ({n['address']})")
        if daemon is not None:
            offload = daemon.get("offload") or {}
            if offload:
                lines.append(f"  routes: {offload['kernel_routes']} in the kernel; {offload['fib_entries']} FIB "
                             f"entries on the switch ({offload['switched']} switched, {offload['to_kernel']} "
                             f"sent to the kernel, {offload['unresolved_next_hops']} unresolved next hops)")
            relay = daemon.get("relay", {})
            lines.append("  relay: " + ", ".join(f"{k} {v}" for k, v in relay.items()))
    return "\n".join(lines)
