"""The daemon as the control socket and /metrics see it (control/server.py's DaemonView).

Called from the control server's and the metrics server's threads, several at once. Everything
comes from what the daemon's threads publish whole (a router's status, policy report, last pass,
counters) or from the kernel and BIRD asked afresh, never by waiting on the reconcile thread:

- a port's TAP (present, up, carrier, addresses, counters) is read from the kernel on each
  status, so a deleted bridge or TAP shows as it is, not as it was;
- kernel route counts are the mirror's, live; FIB counts are the planner's, recounted at least
  once a second by the reconcile thread;
- BIRD is asked afresh for each status (it is what an operator or a script just changed), and
  at most once per BIRD_CACHE seconds for /metrics, however many scrapers ask.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import threading
import time
from datetime import datetime, timezone

from .. import config as config_mod, netns, reconfig
from ..bridge import tap
from ..bridge.relay import ERRORS as RELAY_ERRORS
from ..control.metrics import BirdProtocolState, Count, MetricsSnapshot, PacketCount, PolicyColumns, RouterFigures
from ..control.server import UnknownRouter
from ..policy.model import State, Status
from ..policy.source import PolicySource
from ..policy.views import as_json
from ..routing import netlink
from ..routing.bird import BirdConfigError, BirdPaths, describe
from .. import paths
from . import lookup, routelist
from .openflow import pipeline
from .. import prefix as pfx
from .openflow import pipeline
from .router import Router

LOG = logging.getLogger("taprouter.control")

BIRD_CACHE = 1.0  # seconds a BIRD answer is reused
PACKET_IN_REASONS = {0: "no_match", 1: "action", 2: "invalid_ttl"}  # OpenFlow 1.3's OFPR_*
_PENDING = (State.PENDING, "")


class DaemonState:
    def __init__(self, core, source: PolicySource | None, started: float | None = None) -> None:
        self.core = core
        self.source = source
        self.started = time.time() if started is None else started
        self._bird: dict[str, tuple[float, dict]] = {}
        self._bird_lock = threading.Lock()
        self._reload_lock = threading.Lock()
        self._columns: dict[str, tuple] = {}  # router -> its policy columns and what they were made of
        self._indexes: dict[str, routelist.RouteIndex] = {}  # router -> its routes' index, for /v1/routes
        self._rebuilding: set[str] = set()
        self._index_lock = threading.Lock()

    @property
    def by_name(self) -> dict[str, Router]:
        """The routers running now: a reload may add or remove some (core.routers is replaced whole)."""
        return {r.name: r for r in self.core.routers.values()}

    def _pick(self, router: str | None) -> list[Router]:
        by_name = self.by_name
        if router is None:
            return list(by_name.values())
        if router not in by_name:
            raise UnknownRouter(router)
        return [by_name[router]]

    def _daemon(self) -> dict:
        return {"pid": os.getpid(), "started": self.started, "source": "control socket"}

    # --- status ---------------------------------------------------------------------------------

    def status(self, router: str | None) -> dict:
        picked = self._pick(router)
        for r in picked:  # the Routing page usually follows the Overview: have its index ready
            self._start_index(r)
        return {"daemon": self._daemon(), "routers": [self._router_status(r) for r in picked]}

    def _router_status(self, router: Router) -> dict:
        config, published = router.config, router.status
        present = netns.exists(config.netns)
        connected = published["switch_connected"]
        offload = published["offload"]
        return {
            "router": router.name, "dpid": f"{config.dpid:#x}", "netns": config.netns, "netns_present": present,
            "holder_pid": router.holder.alive(), "daemon": self._daemon(),
            "switch": {"connected": connected, "since": router.connected_since if connected else None,
                       "address": published["switch_address"], "transport": published["switch_transport"],
                       "reconnects": max(0, router.connections - 1), "errors": published["switch_errors"]},
            "ports": self._ports(router, present, published["switch_ports"] if connected else None),
            "flows_installed": published["flows_installed"], "groups_installed": published["groups_installed"],
            "routes": None if not offload else {
                "kernel_routes": len(router.mirror.routes), "fib_entries": offload["fib_entries"],
                "switched": offload["switched"], "to_kernel": offload["to_kernel"],
                "unresolved_next_hops": offload["unresolved_next_hops"]},
            "bird": self._bird_status(router, fresh=True),
            "last_pass": router.last_pass,
            "relay": self.core.relay.counters_of(router.config.dpid),
            "ingress_drops": self._ingress_drops(router),
            "ha": published.get("ha"),
        }

    def _ports(self, router: Router, present: bool, switch_ports: dict | None) -> list[dict]:
        ports = router.config.ports
        try:
            found = tap.links(router.config.netns, {t.tap for t in router.config.taps}) if present else {}
        except OSError as exc:  # the netns went away between the two looks
            LOG.debug("router %s: cannot read its TAPs: %s", router.name, exc)
            found = {}
        out = []
        for port in ports:
            switch_port = (switch_ports or {}).get(port.number)
            out.append({
                "port": port.number, **_tap_status(port.tap, found),
                "link_up": None if switch_ports is None else bool(switch_port and switch_port["link_up"]),
                "speed_kbps": switch_port.get("speed_kbps") if switch_port else None,
                "vlans": [{"vid": v.vid, **_tap_status(v.tap, found)} for v in port.vlans],
            })
        return out

    @staticmethod
    def _ingress_drops(router: Router) -> list[dict]:
        """Every port and reason of a router with VLANs, 0 until the switch counted one."""
        if not any(p.vlans for p in router.config.ports):
            return []
        drops = router.ingress_drops
        return [{"port": p.number, "reason": reason, "packets": drops.get((p.number, reason), 0)}
                for p in router.config.ports for reason in pipeline.DROP_REASONS.values()]

    def _bird_status(self, router: Router, fresh: bool = False) -> dict | None:
        """BIRD's answer; unless `fresh`, one at most BIRD_CACHE old (what scrapes ask for)."""
        bird = router.config.bird
        if bird is None:
            return None
        now = time.monotonic()
        with self._bird_lock:
            cached = self._bird.get(router.name)
            if not fresh and cached is not None and now - cached[0] < BIRD_CACHE:
                return cached[1]
        answer = describe(bird.config, BirdPaths.under(paths.router_dir(router.name)))
        with self._bird_lock:
            self._bird[router.name] = (time.monotonic(), answer)
        return answer

    # --- policies ---------------------------------------------------------------------------------

    def policies(self, router: str | None) -> list[dict]:
        totals = self.source.totals if self.source is not None else {}
        entries = []
        for r in self._pick(router):
            report = r.policy_report
            for policy in sorted(r.policies, key=lambda p: (-p.priority, p.name)):
                state, error = report.states.get(policy.id, (State.PENDING, ""))
                packets, octets = totals.get(policy.id) or report.counters.get(policy.id, (0, 0))
                expired = report.expired.get(policy.id)
                written = self.source.written(policy.id) if self.source is not None else None
                status = Status(policy.id, state, error,
                                installed_at=written.installed_at if written is not None else None,
                                expired_at=datetime.fromtimestamp(expired, timezone.utc) if expired else None,
                                packets=packets, bytes=octets)
                entries.append(as_json(policy, status))
        return entries

    def policies_changed(self, router: str, names: list[str] | None,
                         generations: tuple[int, int] | None = None) -> dict:
        self._pick(router)
        if self.source is None:
            return {"router": router, "names": names, "accepted": False, "applied": False,
                    "error": "the daemon runs without a policy store"}
        result = self.source.changed(router, names, moved=generations)
        return {"router": router, "names": names, "accepted": result.get("error") is None,
                "applied": bool(result.get("applied")), "error": result.get("error")}

    # --- lookup -----------------------------------------------------------------------------------

    def lookup(self, router: str, address: str) -> dict:
        r = self._pick(router)[0]
        addr = ipaddress.ip_address(address)
        state = r.mirror.snapshot()
        tap_of_port = {(t.number, t.vid): t.tap for t in r.config.taps}
        port_of_tap = {t.tap: t.number for t in r.config.taps}
        fib = r.planner.fib
        hopsets = {gid: shards.hopset for gid, shards in list(fib.books.owner.items())}
        switch = lookup.switch_entry(fib.targets, fib.switch_groups, addr, tap_of_port, state, hopsets)
        kernel = lookup.kernel_answer(r.mirror.routes, r.config.netns, addr, port_of_tap, state,
                                      netlink.mirrored(addr), lambda: netlink.fib_match(r.config.netns, addr))
        return {"router": r.name, "address": str(addr), "switch": switch, "kernel": kernel,
                "agree": lookup.agree(switch, kernel)}

    # --- routes -----------------------------------------------------------------------------------

    def routes(self, router: str, within: str | None, limit: int | None, after: str | None) -> dict:
        r = self._pick(router)[0]
        nets = ([pfx.from_network(ipaddress.ip_network(within))] if within
                else [pfx.pack(4, 0, 0), pfx.pack(6, 0, 0)])
        index = self._route_index(r)
        mirror, fib = r.mirror, r.planner.fib
        rows, last = routelist.page(index, mirror.routes, nets, routelist.parse_cursor(after), limit or 50)
        state = mirror.snapshot()
        port_of_tap = {t.tap: t.number for t in r.config.taps}
        targets, groups = fib.targets, fib.switch_groups
        out = []
        for pk, entry in rows:
            hops = entry[1]
            found = lookup.mirror_entry((pk, entry[0], hops), None, ("", ""), port_of_tap, state)
            target = targets.get(pk)
            is_group = type(target) is int and target > 0 and groups.get(target) is not None
            out.append({"prefix": found["prefix"], "metric": entry[0], "other_metrics": list(entry[2::2]),
                        "type": "unicast" if hops is not None else "other", "next_hops": found["next_hops"],
                        "fib_target": None if target is None else "group" if is_group else "kernel",
                        "group": target if is_group else None})
        return {"router": r.name, "prefix": within, "routes": out,
                "next": str(pfx.to_network(last)) if last is not None else None,
                "kernel_routes": len(mirror.routes), "fresh": index.version == mirror.version}

    def _route_index(self, r: Router) -> routelist.RouteIndex:
        """The router's route index: built here the first time, or when the table has changed a lot
        since (routelist.RouteIndex.far_behind); after a smaller change the old one still answers
        while a thread builds the next (a million routes take about a
        second, in a loop that lets the relay and the reconciler run)."""
        with self._index_lock:
            index = self._indexes.get(r.name)
            if index is None or (index.version != r.mirror.version and index.far_behind(len(r.mirror.routes))):
                index = self._indexes[r.name] = self._build_index(r)
            elif index.version != r.mirror.version and r.name not in self._rebuilding:
                self._rebuilding.add(r.name)
                threading.Thread(target=self._rebuild, args=(r,), name=f"route-index-{r.name}", daemon=True).start()
        return index

    def _start_index(self, r: Router) -> None:
        """Build the router's first route index on a thread, if none is built or being built."""
        with self._index_lock:
            if r.name in self._indexes or r.name in self._rebuilding:
                return
            self._rebuilding.add(r.name)
        threading.Thread(target=self._rebuild, args=(r,), name=f"route-index-{r.name}", daemon=True).start()

    @staticmethod
    def _build_index(r: Router) -> routelist.RouteIndex:
        version = r.mirror.version
        return routelist.RouteIndex.build(list(r.mirror.routes), version)  # list(): one C call, whole

    def _rebuild(self, r: Router) -> None:
        try:
            index = self._build_index(r)
            with self._index_lock:
                self._indexes[r.name] = index
        finally:
            with self._index_lock:
                self._rebuilding.discard(r.name)

    # --- commands ---------------------------------------------------------------------------------

    def reload_bird(self, router: str | None) -> dict:
        results = []
        for r in self._pick(router):
            if r.bird is None:
                if router is not None:
                    results.append({"router": r.name, "reloaded": False, "message": "no BIRD configured"})
                continue
            try:
                results.append({"router": r.name, "reloaded": True, "message": r.bird.reload()})
            except BirdConfigError as exc:
                LOG.error("router %s: BIRD config not reloaded, BIRD keeps its old one: %s", r.name, exc)
                results.append({"router": r.name, "reloaded": False, "message": str(exc)})
        return {"results": results}

    # --- reload -----------------------------------------------------------------------------------

    def reload(self, router: str | None) -> dict:
        """SIGHUP or POST /v1/reload: re-read the config file and apply what changed (reconfig.py),
        then reconfigure BIRD as before. A file that fails validation, or that changes something
        only a restart can, changes nothing; either way the answer and the log say why. A router
        added that fails to start is named in the errors, the rest applied. One reload at a time."""
        with self._reload_lock:
            old = self.core.config
            try:
                new = config_mod.load(old.path)
            except config_mod.ConfigError as exc:
                for problem in exc.problems:
                    LOG.error("reload refused, nothing changed: %s", problem)
                return {"applied": False, "changes": [], "errors": list(exc.problems), "bird": []}
            if router is not None and router not in self.by_name and router not in {r.name for r in new.routers}:
                raise UnknownRouter(router)
            for warning in new.warnings:
                LOG.warning("reload: %s", warning)
            change = reconfig.diff(old, new, router)
            if change.restart:
                errors = [f"{old.path}: {why}" for why in change.restart]
                for error in errors:
                    LOG.error("reload refused, nothing changed (these need a restart): %s", error)
                return {"applied": False, "changes": [], "errors": errors, "bird": []}
            done, errors = self.core.reconfigure(change, reconfig.applied(old, new, router))
            self._roster_changed(change)
            for line in done:
                LOG.info("reload: %s", line)
            for error in errors:
                LOG.error("reload: %s", error)
            if not done and not errors:
                LOG.info("reload: %s: no change to ports or addresses", old.path)
            running = self.by_name
            bird = self.reload_bird(router)["results"] if router is None or router in running else []
            return {"applied": True, "changes": done, "errors": errors, "bird": bird}

    def _roster_changed(self, change: reconfig.ConfigChange) -> None:
        """Routers a reload removed are forgotten here and by the policy source; those it started
        are handed to the policy source, which reads their policies."""
        removed = [r.name for r in change.removed]
        with self._index_lock:
            for name in removed:
                self._indexes.pop(name, None)
        with self._bird_lock:
            for name in removed:
                self._bird.pop(name, None)
        for name in removed:
            self._columns.pop(name, None)
        running = self.by_name
        started = {r.name: running[r.name] for r in change.added if r.name in running}
        if self.source is not None and (removed or started):
            self.source.routers_changed(started, removed)

    # --- metrics ----------------------------------------------------------------------------------

    def metrics(self) -> MetricsSnapshot:
        relay = self.core.relay
        packet_ins, packet_outs, errors = dict(relay.packet_ins), dict(relay.packet_outs), dict(relay.errors)
        totals = self.source.totals if self.source is not None else {}
        figures = []
        for r in self.by_name.values():
            dpid = r.config.dpid
            published = r.status
            offload = published["offload"] or {}
            report = r.policy_report
            bird = self._bird_status(r)
            figures.append(RouterFigures(
                router=r.name,
                switch_connected=published["switch_connected"],
                switch_reconnects=max(0, r.connections - 1),
                packet_ins=tuple(PacketCount(port, PACKET_IN_REASONS.get(reason, str(reason)), n)
                                 for (d, port, reason), n in sorted(packet_ins.items()) if d == dpid),
                packet_outs=tuple(PacketCount(port, "relay", n)
                                  for (d, port), n in sorted(packet_outs.items()) if d == dpid),
                punt_drops=tuple(Count(pipeline.meter_name(m), n) for m, n in sorted(r.punt_drops.items())),
                relay_errors=tuple(Count(kind, errors.get((dpid, kind), 0)) for kind in RELAY_ERRORS),
                ingress_drops=tuple(PacketCount(d["port"], d["reason"], d["packets"]) for d in self._ingress_drops(r)),
                kernel_routes=len(r.mirror.routes),
                fib_switched=offload.get("switched", 0),
                fib_to_kernel=offload.get("to_kernel", 0),
                unresolved_next_hops=offload.get("unresolved_next_hops", 0),
                backlog=len(r.planner.backlog),
                passes=r.passes,
                bird=tuple(BirdProtocolState(p["name"], p["proto"], p["state"], p["info"])
                           for p in (bird or {}).get("protocols", [])),
                policies=self._policy_columns(r, totals),
                **_ha_figures(published.get("ha")),
            ))
        return MetricsSnapshot(tuple(figures))

    def _policy_columns(self, router: Router, totals: dict) -> PolicyColumns:
        """The router's policy figures as columns. Each column is kept while what it is made of
        is the same object (the daemon's threads replace these whole): names while the policies
        are, states while the report's states are, counts while the totals and counters are. So
        a scrape builds only what changed since the last one, at most the counts, every
        source.WRITE_EVERY seconds."""
        policies, report = router.policies, router.policy_report
        kept = self._columns.get(router.name)
        if kept is None or kept[0] is not policies:
            ids = [p.id for p in policies]
            kept = (policies, ids, tuple(p.name for p in policies), None, None)
        _, ids, names, states, counts = kept
        if states is None or states[0] is not report.states_of:
            known = report.states
            states = (report.states_of, tuple(known.get(i, _PENDING)[0].value for i in ids))
        if counts is None or counts[0] is not totals or counts[1] is not report.counters:
            counters = report.counters
            pairs = [totals.get(i) or counters.get(i, (0, 0)) for i in ids]
            counts = (totals, counters, tuple(pair[0] for pair in pairs), tuple(pair[1] for pair in pairs))
        self._columns[router.name] = (policies, ids, names, states, counts)
        return PolicyColumns(names, counts[2], counts[3], states[1])


def _tap_status(name: str | None, found: dict) -> dict:
    """A TAP as the kernel shows it (tap.links' answer), for status; a port without an untagged TAP
    (name None) shows none."""
    state, counters = found.get(name, (None, None)) if name else (None, None)
    return {"tap": name, "present": state is not None, "mac": state.mac if state else None,
            "carrier": bool(state and state.carrier), "up": bool(state and state.up),
            "addresses": [str(a) for a in state.addresses] if state else [],
            "counters": counters.__dict__.copy() if counters else None}


def _ha_figures(ha: dict | None) -> dict:
    if ha is None:
        return {}
    return {"ha_role": ha["role"], "ha_generation": ha["generation"], "ha_stale_flows": ha["stale_flows"]}
