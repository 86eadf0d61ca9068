"""`taprouter status`: each router as the daemon tells it over the control socket, or, when no
daemon answers, as the kernel, the TAP holder and BIRD tell it.

Either way a router's entry has the daemon's shape (control/schema.py's RouterStatus), plus
`status_file` (a daemon that runs but does not answer on the socket: what its status file says),
`healthy` and `problems`. A router is healthy when a daemon answers for it, its switch is
connected, and its BIRD, where one is configured, runs and answers.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from . import netns, paths
from .bridge import tap
from .bridge.holder import HolderClient
from .config import Config, PortConfig, RouterConfig
from .control.client import ControlClient, ControlError, ControlUnavailable
from .routing.bird import BirdPaths, describe


@dataclass(frozen=True)
class Report:
    socket: Path
    routers: list[dict]  # RouterStatus, with status_file, healthy and problems
    unanswered: str | None  # the problem when no daemon answered (a sentence); None when one did


def control_socket(config: Config) -> Path:
    # The config's `control: {socket: ...}` once config.py has it; the run directory's until then.
    configured = getattr(getattr(config, "control", None), "socket", None)
    return Path(configured) if configured else paths.control_socket()


def ask_daemon(socket: Path) -> tuple[dict | None, str | None]:
    """The daemon's Status of every router it runs, or None and what is wrong. (Asking for every
    router keeps a router the daemon does not run from reading as a daemon that does not answer.)"""
    if not socket.exists():
        return None, f"daemon not running (no answer on {socket})"
    if not os.access(socket, os.R_OK | os.W_OK):
        return None, f"cannot ask the daemon: {socket}: permission denied (root and the taprouter group may)"
    try:
        return ControlClient(socket).get("/v1/status"), None
    except ControlUnavailable as exc:
        return None, f"daemon not running (no answer on {socket}: {exc})"
    except ControlError as exc:
        return None, f"the daemon on {socket} answered HTTP {exc.status}: {exc}"


# --- what the host says, when the daemon does not ----------------------------------------------


def _status_file(router: RouterConfig) -> dict | None:
    """The daemon's per-second status file, when the pid it names is alive."""
    try:
        data = json.loads((paths.router_dir(router.name) / "status.json").read_text())
        os.kill(data["pid"], 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return data


def _bird_status(router: RouterConfig) -> dict | None:
    if router.bird is None:
        return None
    return describe(router.bird.config, BirdPaths.under(paths.router_dir(router.name)))


def _tap(netns_name: str, present: bool, name: str | None) -> dict:
    try:
        state = tap.link_state(netns_name, name) if present and name else None
    except tap.TapError:
        state = None
    return {"tap": name, "present": state is not None, "mac": state.mac if state else None,
            "carrier": bool(state and state.carrier), "up": bool(state and state.up),
            "addresses": [str(a) for a in state.addresses] if state else [], "counters": None}


def _port(netns_name: str, present: bool, port: PortConfig) -> dict:
    return {"port": port.number, **_tap(netns_name, present, port.tap), "link_up": None, "speed_kbps": None,
            "vlans": [{"vid": v.vid, **_tap(netns_name, present, v.tap)} for v in port.vlans]}


def from_host(router: RouterConfig) -> dict:
    """A RouterStatus from the kernel, the holder and BIRD (no daemon to ask)."""
    present = netns.exists(router.netns)
    daemon_file = _status_file(router)
    return {
        "router": router.name, "dpid": f"{router.dpid:#x}", "netns": router.netns, "netns_present": present,
        "holder_pid": HolderClient(paths.router_dir(router.name)).alive(),
        "daemon": None if daemon_file is None else {"pid": daemon_file["pid"], "started": None,
                                                     "source": "status file"},
        "switch": None, "ports": [_port(router.netns, present, p) for p in router.ports],
        "flows_installed": None, "groups_installed": None, "routes": None, "bird": _bird_status(router),
        "last_pass": None, "relay": None, "ingress_drops": [], "status_file": daemon_file,
    }


def collect(config: Config, router: str | None = None) -> Report:
    socket = control_socket(config)
    routers = [r for r in config.routers if router in (None, r.name)]
    answer, unanswered = ask_daemon(socket)
    served = {s["router"]: s for s in answer["routers"]} if answer is not None else {}
    entries = []
    for r in routers:
        entry = {**served[r.name], "status_file": None} if r.name in served else from_host(r)
        entry["problems"] = problems(entry, r.bird is not None, socket, unanswered)
        entry["healthy"] = not entry["problems"]
        entries.append(entry)
    return Report(socket, entries, unanswered)


# --- health and the two layouts (pure) ---------------------------------------------------------


def problems(entry: dict, bird_configured: bool, socket: Path, unanswered: str | None) -> list[str]:
    found = []
    daemon = entry["daemon"]
    if daemon is None:
        found.append(unanswered or "the daemon does not run this router")
    elif daemon["source"] != "control socket":
        found.append(f"daemon pid {daemon['pid']} does not answer on {socket}")
    if entry["switch"] is None or not entry["switch"]["connected"]:
        found.append("switch not connected")
    ha = entry.get("ha")
    if ha and ha["role"] in ("fenced", "starting"):
        found.append(f"HA: {ha['role']}" + (f" ({ha['lease_error']})" if ha.get("lease_error") else ""))
    bird = entry["bird"]
    if bird_configured and (bird is None or bird["pid"] is None or bird["error"]):
        found.append(f"BIRD: {(bird or {}).get('error') or 'not running'}")
    return found


def to_json(report: Report) -> str:
    return json.dumps(report.routers, indent=2)


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t is not None else "?"


def _switch_state(entry: dict) -> str:
    switch = entry["switch"]
    if not switch["connected"]:
        return f"daemon running, switch not connected ({switch['reconnects']} reconnects)"
    via = f" from {switch['address']} over {switch['transport'].upper()}" if switch["address"] else ""
    return (f"switch connected since {_when(switch['since'])}{via} ({switch['reconnects']} reconnects), "
            f"{entry['flows_installed']} flows and {entry['groups_installed']} groups installed")


def _file_state(entry: dict, socket: Path) -> str:
    """What a daemon that does not answer on the socket last wrote to its status file."""
    data = entry["status_file"]
    state = f"daemon pid {data['pid']} does not answer on {socket}; its status file says: "
    if not data.get("switch_connected"):
        return state + "switch not connected"
    via = (f" from {data['switch_address']} over {data['switch_transport'].upper()}"
           if data.get("switch_address") and data.get("switch_transport") else "")
    return (state + f"switch connected{via}, {data.get('flows_installed')} flows and "
            f"{data.get('groups_installed')} groups installed")


def _port_line(p: dict) -> str:
    return _tap_line(f"port {p['port']}", p)


def _tap_line(label: str, p: dict) -> str:
    if p["tap"] is None:
        return f"  {label}: VLANs only"
    if not p["present"]:
        return f"  {label}: {p['tap']} missing"
    link = ("UP" if p["up"] else "DOWN") + (", carrier" if p["carrier"] else ", NO-CARRIER")
    line = f"  {label}: {p['tap']} {p['mac']} {link} {' '.join(p['addresses'])}"
    c = p["counters"]
    if c:
        line += (f" (rx {c['rx_packets']} tx {c['tx_packets']} packets, "
                 f"{c['rx_dropped'] + c['tx_dropped']} dropped)")
    return line


def _port_lines(p: dict) -> list[str]:
    """A port, then its VLANs' TAPs under it."""
    return [_port_line(p)] + [_tap_line(f"  VLAN {v['vid']}", v) for v in p.get("vlans", ())]


def _drops_line(drops: list[dict]) -> list[str]:
    counted = [f"port {d['port']} {d['reason']} {d['packets']}" for d in drops if d["packets"]]
    return [f"  ingress drops: {', '.join(counted) if counted else 'none'}"] if drops else []


def _bird_lines(bird: dict) -> list[str]:
    lines = [f"  BIRD: {'pid ' + str(bird['pid']) if bird['pid'] else 'not running'}"
             f" ({bird['config']}){'; ' + bird['error'] if bird['error'] else ''}"]
    for p in bird["protocols"]:
        detail = [p["info"]] if p["info"] else []
        if p["routes_imported"] is not None:
            detail.append(f"{p['routes_imported']} routes imported")
        lines.append(f"    {p['name']:<12} {p['proto']:<8} {p['state']:<6} since {p['since']:<13} " + ", ".join(detail))
    for n in bird["ospf_neighbours"]:
        lines.append(f"    OSPF neighbour {n['router_id']} {n['state']} on {n['interface']} ({n['address']})")
    return lines


def _router_text(entry: dict, socket: Path) -> list[str]:
    if entry["switch"] is not None:
        state = _switch_state(entry)
    elif entry["status_file"] is not None:
        state = _file_state(entry, socket)
    else:
        state = entry["problems"][0]
    lines = [f"router {entry['router']} (dpid {entry['dpid']}, netns {entry['netns']}"
             f"{'' if entry['netns_present'] else ' MISSING'}): {state}",
             f"  TAP holder: {'pid ' + str(entry['holder_pid']) if entry['holder_pid'] else 'not running'}"]
    lines += [line for p in entry["ports"] for line in _port_lines(p)]
    lines += _drops_line(entry.get("ingress_drops") or [])
    if entry["bird"] is not None:
        lines += _bird_lines(entry["bird"])
    routes = entry["routes"]
    if routes:
        lines.append(f"  routes: {routes['kernel_routes']} in the kernel; {routes['fib_entries']} FIB entries on the "
                     f"switch ({routes['switched']} switched, {routes['to_kernel']} sent to the kernel, "
                     f"{routes['unresolved_next_hops']} unresolved next hops)")
    last = entry["last_pass"]
    if last and last["time"] is not None:
        lines.append(f"  last pass: {_when(last['time'])}, {last['duration'] * 1000:.1f} ms: {last['add']} added, "
                     f"{last['modify']} modified, {last['delete']} deleted, {last['groups']} group changes")
    ha = entry.get("ha") or (entry["status_file"] or {}).get("ha")
    if ha:
        lines.append(f"  HA: {ha['role']} (node {ha['node']}; lease holder {ha['holder'] or '-'}, generation "
                     f"{ha['generation']}){'; ' + str(ha['stale_flows']) + ' stale route flows held' if ha['stale_flows'] else ''}"
                     f"{'; lease: ' + ha['lease_error'] if ha.get('lease_error') else ''}")
    relay = entry["relay"] or (entry["status_file"] or {}).get("relay")
    if relay:
        lines.append("  relay: " + ", ".join(f"{k} {v}" for k, v in relay.items()))
    lines.append("  health: " + ("OK" if entry["healthy"] else "; ".join(entry["problems"])))
    return lines


def to_text(report: Report) -> str:
    return "\n".join(line for entry in report.routers for line in _router_text(entry, report.socket))
