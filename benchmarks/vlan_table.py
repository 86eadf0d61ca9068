#!/usr/bin/env python3
"""A full table whose next hop sits on a VLAN TAP, against the same table on an untagged port.

Issue 25: a full table whose next hops sit on VLANs must load within 10% of the same table on
untagged ports. Two labs are up side by side, alike but for router port 2: in one it has an
untagged TAP, in the other only VLAN 20's TAP, with the same addresses. The next hop (10.0.2.2,
2001:db8:2::2) is a permanent neighbour on that TAP in both, so every route becomes a flow to a
group (which, on the VLAN, also sets the tag). Each round loads BENCH_ROUTES IPv4 /24s and 22% as
many IPv6 /48s in one burst from the raw-netlink producer (benchmarks/inject.py) into each lab in
turn, checks the switch against the kernel, and withdraws them; BENCH_VLAN_ROUNDS rounds (3),
alternating which lab goes first. The figure is the ratio of the fastest VLAN load to the fastest
untagged one, both from this one run (timings on a shared machine move; their ratio less).

Usage: BENCH_ROUTES=100000 .venv/bin/python benchmarks/vlan_table.py (writes benchmarks/vlan_table.json;
default a full table, 1,000,000 IPv4 routes). The switch is over TCP in both labs.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from benchmarks import fulltable, routes  # noqa: E402
from benchmarks.inject import arrival, build  # noqa: E402
from taprouter import netns  # noqa: E402
from taprouter.controller.openflow.pipeline import Table  # noqa: E402
from taprouter.lab import sh  # noqa: E402

OUT = Path(os.environ.get("BENCH_VLAN_OUT", ROOT / "benchmarks" / "vlan_table.json"))
ROUNDS = int(os.environ.get("BENCH_VLAN_ROUNDS", "3"))
VID = 20
NEXT_HOP_MAC = "02:7a:70:00:02:02"  # the pinned next hop's: nothing answers for it, nothing needs to
TARGET = 1.10


class PortBench(routes.RouteBench):
    """RouteBench's lab with router port 2 untagged (vid None) or carrying only VLAN `vid`."""

    def __init__(self, n: int, vid: int | None):
        super().__init__(n, tls=False)
        self.vid = vid
        self.prefix = ("rv" if vid else "ru") + self.prefix[2:]
        self.lab.prefix = self.prefix
        self.router = f"{self.prefix}r"
        self.tap = f"{self.prefix}p2" + (f".{vid}" if vid else "")

    def up(self) -> None:
        self.lab.up()
        for n in (1, 2):
            self.lab.add_host(f"h{n}", n, f"10.0.{n}.2/24", f"2001:db8:{n}::2/64", f"10.0.{n}.1",
                              f"2001:db8:{n}::1")
        port2 = {"tap": self.tap, "addresses": ["10.0.2.1/24", "2001:db8:2::1/64"]}
        self.config.write_text(yaml.safe_dump({
            "openflow": self.lab.openflow_config(),
            "database": f"sqlite:///{self.tmp / 'taprouter.db'}", "metrics": {"listen": None},
            "routers": {self.router: {"dpid": self.lab.dpid, "netns": self.router, "ports": {
                1: {"tap": f"{self.prefix}p1", "addresses": ["10.0.1.1/24", "2001:db8:1::1/64"]},
                2: {"vlans": {self.vid: port2}} if self.vid else port2}}}}))
        self.start()
        for gateway in (self.GATEWAY4, self.GATEWAY6):
            sh("ip", "-n", self.router, "neigh", "replace", gateway, "dev", self.tap, "lladdr", NEXT_HOP_MAC,
               "nud", "permanent")
        hosts = {f"{self.GATEWAY4}/32", f"{self.GATEWAY6}/128"}
        routes.wait_count(self.lab.bridge, lambda c: hosts <= set(self.route_flows()[0]), "host entries", 0.1)

    def ifindex(self) -> int:
        with netns.iproute(self.router) as ipr:
            return ipr.link_lookup(ifname=self.tap)[0]

    def next_hop_groups(self) -> str:
        """The switch's groups (the next hop's, one per family), as ovs-ofctl prints them."""
        return sh("ovs-ofctl", "-O", "OpenFlow13", "dump-groups", self.lab.bridge).strip()

    def full_table(self, n6: int, seed: int) -> dict:
        """Both families loaded in one burst, checked, and withdrawn; the figures of each."""
        n4, index, base = self.routes, self.ifindex(), self.counts()
        adds = (build(index, self.GATEWAY4, arrival(n4, "20.0.0.0", seed))
                + build(index, self.GATEWAY6, arrival(n6, fulltable.V6_BASE, seed + 1, 6)))
        dels = (build(index, self.GATEWAY4, arrival(n4, "20.0.0.0", seed + 2), delete=True)
                + build(index, self.GATEWAY6, arrival(n6, fulltable.V6_BASE, seed + 3, 6), delete=True))
        tables = (Table.FIB4, Table.FIB6)
        loaded = self.burst(adds, lambda v4, v6: v4 >= base[0] + n4 and v6 >= base[1] + n6, "load", n4 + n6, tables)
        figures = {"load": self.stage_figures(loaded, n4 + n6, "on_switch_s")}
        self.verify(figures, "load")
        gone = self.burst(dels, lambda v4, v6: v4 <= base[0] and v6 <= base[1], "withdrawal", n4 + n6, tables)
        figures["withdraw"] = self.stage_figures(gone, n4 + n6, "off_switch_s")
        self.verify(figures, "withdrawal")
        return figures


def log(text: str) -> None:
    print(f"[vlan_table] {text}", flush=True)


def best(rounds: list[dict], kind: str, stage: str, key: str) -> float:
    return min(r[kind][stage][key] for r in rounds)


def main() -> int:
    n4 = int(os.environ.get("BENCH_ROUTES", "1000000"))
    n6 = fulltable.count6(n4)
    labs = {"untagged": PortBench(n4, None), "vlan": PortBench(n4, VID)}
    results: dict = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cpus": os.cpu_count(), "ipv4_routes": n4,
                     "ipv6_routes": n6, "vlan": VID, "transport": "tcp", "target_ratio": TARGET}
    try:
        for lab in labs.values():
            lab.up()
        results["next_hop_groups"] = {kind: lab.next_hop_groups() for kind, lab in labs.items()}
        log(f"next hop groups: {results['next_hop_groups']}")
        rounds = []
        for i in range(ROUNDS):
            order = ("untagged", "vlan") if i % 2 == 0 else ("vlan", "untagged")
            this = {}
            for kind in order:
                this[kind] = labs[kind].full_table(n6, seed=10 + 4 * i)
                load, gone = this[kind]["load"], this[kind]["withdraw"]
                log(f"round {i + 1}, {kind}: {n4} + {n6} routes on the switch in {load['on_switch_s']:.2f} s "
                    f"({load['routes_per_s']}/s), off in {gone['off_switch_s']:.2f} s; daemon CPU per route "
                    f"{load['daemon_cpu_us_per_route']} us loading")
            rounds.append(this)
        results["rounds"] = rounds
        for stage, key in (("load", "on_switch_s"), ("withdraw", "off_switch_s")):
            u, v = best(rounds, "untagged", stage, key), best(rounds, "vlan", stage, key)
            results[stage] = {"untagged_s": u, "vlan_s": v, "ratio_vlan_over_untagged": round(v / u, 3)}
        # The kernel's own time to take the routes (the producer's) moves with the machine's load as
        # much as the switch's does; the multiple of it, and the daemon's CPU per route, less so.
        results["load"]["over_kernel"] = {kind: min(round(r[kind]["load"]["on_switch_s"] / r[kind]["load"]["producer_s"], 2)
                                                    for r in rounds) for kind in labs}
        results["load"]["daemon_cpu_us_per_route"] = {kind: best(rounds, kind, "load", "daemon_cpu_us_per_route")
                                                      for kind in labs}
        results["verify"] = {kind: {stage: {key: sum(r[kind]["verify"][stage][key] for r in rounds)
                                            for key in ("missing", "stale")} for stage in ("load", "withdrawal")}
                             for kind in labs}
        ratio = results["load"]["ratio_vlan_over_untagged"]
        log(f"fastest load: VLAN {results['load']['vlan_s']:.2f} s, untagged {results['load']['untagged_s']:.2f} s: "
            f"ratio {ratio:.3f} (target <= {TARGET}); withdrawal ratio "
            f"{results['withdraw']['ratio_vlan_over_untagged']:.3f}; on the switch as a multiple of the kernel's "
            f"own time, best: {results['load']['over_kernel']}; daemon CPU per route loading, best: "
            f"{results['load']['daemon_cpu_us_per_route']} us")
    finally:
        for lab in labs.values():
            lab.down()
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    log(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
