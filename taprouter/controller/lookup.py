"""A route lookup, both ways: which FIB entry of the switch an address hits and where it sends it,
and which route the kernel picks for it; for the control socket's /v1/lookup (schema.py's Lookup).

The switch's side is read from the planner's books, which hold what was sent to the switch (the
FIB by packed prefix, and the groups). The kernel's side is read from the kernel mirror
(routing/mirror.py): it is a faithful copy of the kernel's main table (a full dump, then every
rtnetlink event in order, re-dumped whole after an overflow), so its longest match is the route
the kernel picks, found in one dict read per prefix length rather than by `ip route show match`
reading a million routes (0.7 to 1.1 s). The mirror keeps neither a route's type nor its
protocol (the full-table decoders skip them); one RTM_GETROUTE with RTM_F_FIB_MATCH, a lookup in
the kernel's trie and no dump, names them. When that answer is not the mirror's route (a local
address, which the local table answers; a blackhole, which fib-match refuses), the kernel is asked
the old way, `ip route show match`, which is exact and slow. Both sides are turned into the same
next hops (port, TAP, MAC) so they can be compared.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from typing import Callable, Mapping

from .. import prefix
from ..mac import int_to_mac
from ..routing.model import KernelState, NeighbourKey, NextHop
from .openflow.flows import Output, SetField
from .openflow.groups import GroupSpec
from .openflow.pipeline import FIB_PRIORITY_BASE, Table
from .planner.fib import HopSet

IP_TIMEOUT = 5.0



def longest_match(table: Mapping[int, object], address: ipaddress.IPv4Address | ipaddress.IPv6Address
                  ) -> tuple[int, object] | None:
    """The longest prefix in `table` (packed prefixes) holding `address`, and its value; one dict
    read a length, safe against a writer on another thread."""
    bits = address.max_prefixlen
    value = int(address)
    for length in range(bits, -1, -1):
        pk = prefix.pack(address.version, value, length)
        found = table.get(pk)
        if found is not None:
            return pk, found
    return None


def switch_entry(targets: Mapping[int, object], groups: Mapping[int, GroupSpec | None],
                 address: ipaddress.IPv4Address | ipaddress.IPv6Address, tap_of_port: Mapping[tuple[int, int], str],
                 state: KernelState, hopsets: Mapping[int, HopSet] | None = None) -> dict:
    """schema.SwitchEntry: the FIB flow the address hits and its target. A target that is not a
    group (the kernel, an entry being replaced, a hop set with no usable member) sends to the kernel.
    `hopsets` (group id -> the hop set it serves) names each bucket's gateway exactly: a host's
    link-local and global addresses share its MAC, and only the hop set says which one a route uses.
    `tap_of_port` maps (switch port, VLAN id or 0) to the TAP; a bucket's VLAN is the one it tags with."""
    table = int(Table.FIB6 if address.version == 6 else Table.FIB4)
    hit = longest_match(targets, address)
    if hit is None:
        return {"prefix": None, "table": table, "priority": 0, "target": "kernel", "group": None,
                "group_type": None, "next_hops": []}
    pk, target = hit
    entry = {"prefix": str(prefix.to_network(pk)), "table": table, "priority": FIB_PRIORITY_BASE + prefix.length(pk),
             "target": "kernel", "group": None, "group_type": None, "next_hops": []}
    spec = groups.get(target) if type(target) is int and target > 0 else None
    if spec is None:
        return entry
    gateways = _gateways(state, tap_of_port, address.version, (hopsets or {}).get(target))
    hops = []
    for bucket in spec.buckets:
        port = next((a.port for a in bucket.actions if isinstance(a, Output)), None)
        mac_int = next((a.value for a in bucket.actions if isinstance(a, SetField) and a.name == "eth_dst"), None)
        mac = int_to_mac(mac_int) if mac_int is not None else None
        vid = next((a.value & 0xFFF for a in bucket.actions if isinstance(a, SetField) and a.name == "vlan_vid"), 0)
        tap = tap_of_port.get((port, vid)) if port is not None else None
        hops.append({"via": gateways.get((tap, mac)), "port": port, "tap": tap, "mac": mac})
    return {**entry, "target": "group", "group": target, "group_type": spec.type.value, "next_hops": hops}


def _gateways(state: KernelState, tap_of_port: Mapping[tuple[int, int], str], version: int,
              hopset: HopSet | None) -> dict[tuple[str, str], str]:
    """(TAP, MAC) -> the neighbour's address, to name a group bucket's next hop: the hop set's
    members when it is known, else any neighbour of the family with that MAC on that TAP."""
    names = {link.index: link.name for link in state.links.values() if link.name in set(tap_of_port.values())}
    keys = [key for key, _ in hopset] if hopset else [key for key in state.neighbours if key.ip.version == version]
    found = {}
    for key in keys:
        neighbour = state.neighbours.get(key)
        if key.ifindex in names and neighbour is not None and neighbour.mac is not None:
            found.setdefault((names[key.ifindex], int_to_mac(neighbour.mac)), str(key.ip))
    return found


def kernel_routes(netns: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> list[dict]:
    """The main table's routes holding the address, as `ip -json -details route show match` gives them."""
    family = "-6" if address.version == 6 else "-4"
    proc = subprocess.run(["ip", "-n", netns, "-json", "-details", family, "route", "show", "table", "main",
                           "match", str(address)], capture_output=True, text=True, timeout=IP_TIMEOUT)
    if proc.returncode != 0:
        raise RuntimeError(f"ip route show match {address}: {proc.stderr.strip()}")
    return json.loads(proc.stdout or "[]")


def kernel_entry(routes: list[dict], address: ipaddress.IPv4Address | ipaddress.IPv6Address,
                 port_of_tap: Mapping[str, int], state: KernelState) -> dict:
    """schema.KernelEntry: of the routes holding the address, the one the kernel picks (the longest
    prefix, then the lowest metric), with its next hops' MACs from the kernel's neighbours. Next hops
    flagged linkdown (or dead) are left out, and a route with none left is passed over, as the
    router's kernel does (kernel.py sets ignore_routes_with_linkdown)."""
    def network(route: dict):
        dst = route.get("dst", "default")
        return ipaddress.ip_network("::/0" if dst == "default" and address.version == 6 else
                                    "0.0.0.0/0" if dst == "default" else dst, strict=False)

    def usable(route: dict) -> tuple[list[dict], bool]:
        hops = route.get("nexthops") or ([route] if "dev" in route else [])
        left = [h for h in hops if not {"linkdown", "dead"} & set(h.get("flags") or ())]
        return left, bool(left) or not hops

    candidates = [(route, hops) for route in routes for hops, ok in [usable(route)] if ok]
    if not candidates:
        return {"prefix": None, "type": None, "protocol": None, "next_hops": []}
    best, best_hops = min(candidates, key=lambda c: (-network(c[0]).prefixlen, c[0].get("metric", 0)))
    index_of = {link.name: link.index for link in state.links.values()}
    hops = []
    for hop in best_hops:
        tap, via = hop.get("dev"), hop.get("gateway")
        target = ipaddress.ip_address(via) if via else address
        neighbour = state.neighbours.get(NeighbourKey(index_of.get(tap, -1), target)) if tap else None
        mac = int_to_mac(neighbour.mac) if neighbour is not None and neighbour.resolved else None
        hops.append({"via": via, "port": port_of_tap.get(tap) if tap else None, "tap": tap, "mac": mac})
    return {"prefix": str(network(best)), "type": best.get("type", "unicast"), "protocol": best.get("protocol"),
            "next_hops": hops}


def agree(switch: dict, kernel: dict) -> bool:
    """Whether the switch forwards the address as the kernel would: to the same (port, MAC) next
    hops; or, when the switch sends it to the kernel, whether the kernel must decide (no route, not a
    unicast route, a next hop unresolved or on no switch port). The prefixes may differ: the switch
    holds a host entry for each neighbour inside a connected subnet."""
    kernel_hops = {(h["port"], h["mac"]) for h in kernel["next_hops"]}
    if switch["target"] == "group":
        return kernel["type"] == "unicast" and {(h["port"], h["mac"]) for h in switch["next_hops"]} == kernel_hops
    return (kernel["type"] != "unicast" or not kernel_hops
            or any(port is None or mac is None for port, mac in kernel_hops))


# --- the kernel's side from the mirror ------------------------------------------------------------


def mirror_pick(routes: Mapping[int, tuple], address: ipaddress.IPv4Address | ipaddress.IPv6Address
                ) -> tuple[int, int, tuple[NextHop, ...] | None] | None:
    """The route the kernel picks for `address` from the mirror's entries (packed prefix -> (metric,
    hops, metric, hops, ...), best metric first): the longest prefix, then the lowest metric, passing
    over a route whose next hops are all linkdown (kernel.py sets ignore_routes_with_linkdown).
    Returns (prefix, metric, usable next hops or None for a route the kernel must judge)."""
    bits, value = address.max_prefixlen, int(address)
    for length in range(bits, -1, -1):
        pk = prefix.pack(address.version, value, length)
        found = routes.get(pk)
        if not found:
            continue
        for i in range(0, len(found), 2):
            hops = found[i + 1]
            if hops is None:
                return pk, found[i], None
            usable = tuple(h for h in hops if not h.linkdown)
            if usable or not hops:
                return pk, found[i], usable
    return None


def mirror_entry(pick: tuple[int, int, tuple[NextHop, ...] | None], address: ipaddress.IPv4Address |
                 ipaddress.IPv6Address | None, kind: tuple[str, str], port_of_tap: Mapping[str, int],
                 state: KernelState) -> dict:
    """schema.KernelEntry from the mirror's pick and the route's (type, protocol). Without an
    address (a route, not a lookup) a connected next hop has no neighbour to name."""
    pk, _metric, hops = pick
    names = {link.index: link.name for link in state.links.values()}
    out = []
    for hop in hops or ():
        tap = names.get(hop.ifindex)
        target = hop.gateway if hop.gateway is not None else address
        neighbour = state.neighbours.get(NeighbourKey(hop.ifindex, target)) if target is not None else None
        mac = int_to_mac(neighbour.mac) if neighbour is not None and neighbour.resolved else None
        out.append({"via": str(hop.gateway) if hop.gateway is not None else None,
                    "port": port_of_tap.get(tap) if tap else None, "tap": tap, "mac": mac})
    return {"prefix": str(prefix.to_network(pk)), "type": kind[0], "protocol": kind[1], "next_hops": out}


MAIN_TABLE = 254


def kernel_answer(routes: Mapping[int, tuple], netns_name: str, address: ipaddress.IPv4Address |
                  ipaddress.IPv6Address, port_of_tap: Mapping[str, int], state: KernelState, mirrored: bool,
                  fib_match: Callable[[], tuple[int, int, str, str] | None]) -> dict:
    """schema.KernelEntry: from the mirror and one fib-match request (`fib_match`, routing.netlink's:
    (prefix, table, type, protocol)) when they name the same unicast route of the main table; else
    from `ip route show match` (exact, and a table scan). `mirrored`: whether the mirror holds
    routes to the address at all (it leaves link-local and multicast out)."""
    if mirrored:
        pick = mirror_pick(routes, address)
        if pick is None:
            return {"prefix": None, "type": None, "protocol": None, "next_hops": []}
        if pick[2] is not None:
            try:
                found = fib_match()
            except OSError:
                found = None
            if found is not None and found[0] == pick[0] and found[1] == MAIN_TABLE and found[2] == "unicast":
                return mirror_entry(pick, address, (found[2], found[3]), port_of_tap, state)
    return kernel_entry(kernel_routes(netns_name, address), address, port_of_tap, state)
