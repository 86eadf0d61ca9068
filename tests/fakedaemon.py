"""An in-memory DaemonView: the answers of a daemon running one or more routers, and what it was told."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from fakemetrics import figures
from taprouter.control.metrics import MetricsSnapshot
from taprouter.control.server import UnknownRouter

STARTED = 1_700_000_000.0


def router_status(name: str, *, connected: bool = True, bird: str | None = "up", ports: int = 2) -> dict:
    """A RouterStatus (schema.py) as a daemon running `name` would answer it."""
    return {
        "router": name, "dpid": "0x1", "netns": name, "netns_present": True, "holder_pid": 4242,
        "daemon": {"pid": 4141, "started": STARTED, "source": "control socket"},
        "switch": {"connected": connected, "since": STARTED + 5 if connected else None,
                   "address": "127.0.0.1:40001" if connected else None, "transport": "tcp" if connected else None,
                   "reconnects": 3, "errors": 0},
        "ports": [{"port": n, "tap": f"{name}-p{n}", "present": True, "mac": f"02:00:00:00:00:0{n}",
                   "carrier": connected, "up": True, "link_up": connected, "speed_kbps": 10_000_000 if connected else None, "addresses": [f"10.0.{n}.1/24"],
                   "counters": {"rx_packets": 10 * n, "tx_packets": 20 * n, "rx_bytes": 1000 * n,
                                "tx_bytes": 2000 * n, "rx_dropped": 0, "tx_dropped": n}}
                  for n in range(1, ports + 1)],
        "flows_installed": 57, "groups_installed": 4,
        "routes": {"kernel_routes": 1000, "fib_entries": 1002, "switched": 990, "to_kernel": 12,
                   "unresolved_next_hops": 1},
        "bird": None if bird is None else {
            "config": f"/etc/taprouter/{name}.conf", "pid": 777 if bird == "up" else None,
            "protocols": [{"name": "ospf1", "proto": "OSPF", "table": "master4", "state": bird, "since": "12:00:01",
                           "info": "Running" if bird == "up" else "", "routes_imported": 12,
                           "routes_exported": 3}] if bird == "up" else [],
            "ospf_neighbours": [{"protocol": "ospf1", "router_id": "10.0.2.2", "state": "Full/DR",
                                 "interface": f"{name}-p2", "address": "10.0.2.2"}] if bird == "up" else [],
            "error": None if bird == "up" else "BIRD is not running"},
        "last_pass": {"time": STARTED + 60, "duration": 0.0123, "add": 5, "modify": 1, "delete": 2, "groups": 1},
        "relay": {"to_tap": 100, "to_switch": 90, "runt": 0, "oversize": 0, "unknown_port": 0,
                  "write_errors": 0, "send_dropped": 0},
    }


@dataclass
class FakeDaemon:
    routers: dict[str, dict] = field(default_factory=lambda: {"r1": router_status("r1")})
    snapshot: MetricsSnapshot = field(default_factory=lambda: MetricsSnapshot((figures("r1"), figures("r2"))))
    fail: str | None = None  # the name of a method that raises
    calls: list[tuple] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _called(self, *call) -> None:
        with self.lock:
            self.calls.append(call)
        if self.fail == call[0]:
            raise RuntimeError(f"{call[0]} broke")

    def _known(self, router: str | None) -> list[str]:
        if router is not None and router not in self.routers:
            raise UnknownRouter(router)
        return [router] if router is not None else sorted(self.routers)

    def status(self, router):
        self._called("status", router)
        return {"daemon": {"pid": 4141, "started": STARTED, "source": "control socket"},
                "routers": [self.routers[r] for r in self._known(router)]}

    def policies(self, router):
        self._called("policies", router)
        return [{"router": r, "name": "web", "priority": 100, "match": {"dst": "10.9.0.0/16", "proto": "tcp"},
                 "action": "drop", "state": "installed", "error": None, "packets": 5, "bytes": 500}
                for r in self._known(router)]

    def lookup(self, router, address):
        self._called("lookup", router, address)
        self._known(router)
        hop = {"via": "10.0.2.2", "port": 2, "tap": f"{router}-p2", "mac": "02:00:00:00:02:02"}
        return {"router": router, "address": address,
                "switch": {"prefix": "10.9.0.0/16", "table": 2, "priority": 26, "target": "group", "group": 7,
                           "group_type": "indirect", "next_hops": [hop]},
                "kernel": {"prefix": "10.9.0.0/16", "type": "unicast", "protocol": "bird", "next_hops": [hop]},
                "agree": True}

    def routes(self, router, prefix, limit, after):
        self._called("routes", router, prefix, limit, after)
        self._known(router)
        hop = {"via": "10.0.2.2", "port": 2, "tap": f"{router}-p2", "mac": "02:00:00:00:02:02"}
        row = {"prefix": "10.9.0.0/16", "metric": 0, "other_metrics": [], "type": "unicast", "next_hops": [hop],
               "fib_target": "group", "group": 7}
        return {"router": router, "prefix": prefix, "routes": [row], "next": None, "kernel_routes": 1, "fresh": True}

    def reload_bird(self, router):
        self._called("reload_bird", router)
        return {"results": [{"router": r, "reloaded": True, "message": "Reconfigured"} for r in self._known(router)]}

    def reload(self, router):
        self._called("reload", router)
        self._known(router)
        return {"applied": True, "changes": ["router r1: port 3 (r1-p3) added"], "errors": [], "bird": []}

    def policies_changed(self, router, names, generations=None):
        self._called("policies_changed", router, names, *([generations] if generations is not None else []))
        self._known(router)
        return {"router": router, "names": names, "accepted": True, "applied": True, "error": None}

    def metrics(self):
        self._called("metrics")
        return self.snapshot
