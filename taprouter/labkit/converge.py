"""Has the lab converged? Every BGP session Established and every OSPF speaker Full with the
neighbours its links give it, in BIRD's own words; or which are not yet."""

from __future__ import annotations

import json
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ..routing.birdctl import BirdControl, BirdError, OspfNeighbour, Protocol
from .plan import LabPlan
from .topology import frr_daemons

POLL = 0.2


@dataclass(frozen=True)
class Speaker:
    node: str
    socket: Path  # BIRD's control socket, or FRR's vty directory
    ospf_expected: int | None  # None: it runs no OSPF
    daemon: str = "bird"


class NotConverged(Exception):
    def __init__(self, waited: float, pending: list[str]):
        super().__init__(f"not converged after {waited:.1f} s: " + "; ".join(pending))
        self.pending = pending


def speakers(plan: LabPlan, down: frozenset = frozenset(), dead: frozenset = frozenset()) -> list[Speaker]:
    expected = plan.ospf_expected(down, dead)
    nodes = [r.name for r in plan.topology.routers if r.bird is not None and r.name not in dead]
    result = [Speaker(n, plan.bird_socket(n), expected.get(n)) for n in nodes]
    result += [Speaker(p.name, plan.bird_socket(p.name) if p.daemon == "bird" else plan.frr_dir(p.name),
                       expected.get(p.name), p.daemon or "bird")
               for p in plan.topology.peers if p.name not in dead and p.daemon in ("bird", "frr")]
    # An ExaBGP peer is not asked: its sessions are the routers' sessions to it.
    return result


def vtysh(directory: Path, command: str, timeout: float = 5) -> str:
    """One command to a FRR peer's daemons (their vty sockets are in `directory`)."""
    try:
        proc = subprocess.run(["vtysh", "--vty_socket", str(directory), "-c", command], capture_output=True,
                              text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BirdError(f"vtysh --vty_socket {directory}: {exc}") from None
    if proc.returncode != 0:
        raise BirdError(f"vtysh --vty_socket {directory} -c {command!r}: {(proc.stderr or proc.stdout).strip()}")
    return proc.stdout


def frr_protocols(summary: dict) -> list[Protocol]:
    """`show bgp summary json`'s peers as BIRD-like protocols, named by the neighbour's address."""
    result = []
    for family in summary.values():
        for address, peer in (family.get("peers") or {}).items() if isinstance(family, dict) else ():
            state = peer.get("state", "")
            result.append(Protocol(address, "BGP", "", "up" if state == "Established" else "start", "", state))
    return result


def frr_neighbours(answer: dict) -> list[OspfNeighbour]:
    """`show ip ospf neighbor json`'s neighbours (FRR says Full/- on a point-to-point link)."""
    result = []
    for router_id, entries in (answer.get("neighbors") or {}).items():
        for entry in entries if isinstance(entries, list) else [entries]:
            result.append(OspfNeighbour("ospf", router_id, entry.get("nbrState", entry.get("state", "")),
                                        entry.get("ifaceName", "").split(":")[0], entry.get("ifaceAddress", "")))
    return result


def full(neighbour: OspfNeighbour) -> bool:
    # On a LAN two routers that are neither DR nor BDR stay 2-Way by design.
    return neighbour.state.startswith("Full") or neighbour.state == "2-Way/DROther"


def bgp_neighbours(show_protocols_all: list[tuple[int, str]]) -> dict[str, str]:
    """Each BGP protocol's neighbour address, from `show protocols all`."""
    result: dict[str, str] = {}
    current = None
    for code, text in show_protocols_all:
        if code == 1002:
            fields = text.split()
            current = fields[0] if len(fields) > 1 and fields[1] == "BGP" else None
        elif current is not None:
            match = re.match(r"\s*Neighbor address:\s*(\S+)", text)
            if match:
                result[current] = match.group(1).split("%")[0]
    return result


def judge(node: str, protocols: list[Protocol], neighbours: list[OspfNeighbour],
          ospf_expected: int | None, skipped: frozenset[str] = frozenset()) -> list[str]:
    """What keeps one speaker from having converged (pure: BIRD's answers in, reasons out).
    `skipped`: BGP protocols whose neighbour a test took away (a link down, a node killed)."""
    pending = []
    for p in protocols:
        disabled = p.state == "down" and not p.info
        if p.proto == "BGP" and not disabled and p.info != "Established" and p.name not in skipped:
            pending.append(f"{node}: BGP {p.name} is {p.state} {p.info}".rstrip())
    if ospf_expected is not None:
        ready = [n for n in neighbours if full(n)]
        seen = ", ".join(f"{n.router_id} {n.state} on {n.interface}" for n in neighbours) or "none"
        if len(ready) < ospf_expected:
            pending.append(f"{node}: OSPF {len(ready)} of {ospf_expected} neighbours Full (seen: {seen})")
        elif len(ready) > ospf_expected:  # a link just taken down, not yet noticed
            pending.append(f"{node}: OSPF {len(ready)} neighbours Full, {ospf_expected} expected (seen: {seen})")
    return pending


def ospf_topology(lines: list[tuple[int, str]]) -> dict[str, tuple[int | None, frozenset[str]]]:
    """`show ospf topology` as router id -> (its distance, the routers its LSA links to)."""
    routers: dict[str, tuple[int | None, set[str]]] = {}
    current = None
    for _, text in lines:
        fields = text.split()
        if len(fields) == 2 and fields[0] == "router" and not text.startswith("\t\t"):
            current = fields[1]
            routers[current] = (None, set())
        elif current is not None and fields[:1] == ["distance"] and len(fields) == 2 and fields[1].isdigit():
            routers[current] = (int(fields[1]), routers[current][1])
        elif current is not None and len(fields) >= 2 and fields[0] == "router":
            routers[current][1].add(fields[1])
        elif not text.strip():
            current = None
    return {rid: (distance, frozenset(links)) for rid, (distance, links) in routers.items()}


@dataclass(frozen=True)
class OspfView:
    node: str
    router_id: str | None
    ptp_full: frozenset[str]  # router ids of its point-to-point neighbours in Full
    topology: dict[str, tuple[int | None, frozenset[str]]]


def flooded(views: list[OspfView]) -> list[str]:
    """Whether every speaker's database holds every speaker's current point-to-point links, no
    more and no fewer: adjacencies come and go before the router-LSAs that say so (BIRD makes one
    per 5 s at most) reach everyone."""
    pending = []
    for view in views:
        if view.router_id is None:
            continue
        for other in views:
            links = other.topology.get(view.router_id, (None, frozenset()))[1]
            missing, stale = view.ptp_full - links, links - view.ptp_full
            if missing:
                pending.append(f"{other.node}: OSPF database lacks {view.node}'s links to "
                               f"{', '.join(sorted(missing))} (flooding)")
            if stale:
                pending.append(f"{other.node}: OSPF database still has {view.node}'s links to "
                               f"{', '.join(sorted(stale))} (flooding)")
            # A neighbour that is not asked itself (a FRR peer) must announce its side as well.
            for neighbour in sorted(view.ptp_full - {v.router_id for v in views}):
                if view.router_id not in other.topology.get(neighbour, (None, frozenset()))[1]:
                    pending.append(f"{other.node}: OSPF database lacks {neighbour}'s link to "
                                   f"{view.node} (flooding)")
    return pending


def pending(plan: LabPlan, down: frozenset = frozenset(), dead: frozenset = frozenset()) -> list[str]:
    result = []
    views = []
    for speaker in speakers(plan, down, dead):
        if speaker.daemon == "frr":
            bgp = "bgpd" in frr_daemons(plan.topology.peer(speaker.node).config)
            try:
                # vtysh fails a command for a daemon that is not running: ask bgpd only if it runs.
                protocols = frr_protocols(json.loads(vtysh(speaker.socket, "show bgp summary json") or "{}")
                                          ) if bgp else []
                neighbours = frr_neighbours(json.loads(vtysh(speaker.socket, "show ip ospf neighbor json") or "{}")
                                            ) if speaker.ospf_expected is not None else []
            except (BirdError, ValueError):
                result.append(f"{speaker.node}: FRR is not answering in {speaker.socket}")
                continue
            skipped = frozenset(p.name for p in protocols if (owner := plan.owner(p.name)) is not None
                                and (owner in dead or frozenset((speaker.node, owner)) in down))
            result += judge(speaker.node, protocols, neighbours, speaker.ospf_expected, skipped)
            continue
        control = BirdControl(str(speaker.socket), timeout=2)
        try:
            protocols = control.protocols()
            neighbours = control.ospf_neighbours() if speaker.ospf_expected is not None else []
            topology = ospf_topology(control.query("show ospf topology")) if speaker.ospf_expected is not None else {}
            addresses = bgp_neighbours(control.query("show protocols all")) if down or dead else {}
        except BirdError:
            result.append(f"{speaker.node}: BIRD is not answering on {speaker.socket}")
            continue
        skipped = frozenset(name for name, address in addresses.items()
                            if (owner := plan.owner(address)) is not None
                            and (owner in dead or frozenset((speaker.node, owner)) in down))
        result += judge(speaker.node, protocols, neighbours, speaker.ospf_expected, skipped)
        if speaker.ospf_expected is not None:
            own = next((rid for rid, (distance, _) in topology.items() if distance == 0), None)
            views.append(OspfView(speaker.node, own,
                                  frozenset(n.router_id for n in neighbours if n.state == "Full/PtP"), topology))
    return result or flooded(views)


def wait(plan: LabPlan, timeout: float, alive=None, down: frozenset = frozenset(),
         dead: frozenset = frozenset()) -> float:
    """Poll until converged; returns the seconds waited. `alive()` may raise when a daemon died."""
    start = time.monotonic()
    while True:
        left = pending(plan, down, dead)
        if not left:
            return time.monotonic() - start
        if alive is not None:
            alive()
        waited = time.monotonic() - start
        if waited >= timeout:
            raise NotConverged(waited, left)
        time.sleep(POLL)
