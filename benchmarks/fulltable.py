"""Both families at once: a full Internet table's IPv4 and IPv6 prefixes on one router.

The global BGP table holds about 1.03 million IPv4 and 0.22 million IPv6 prefixes (issue 5).
routes.py times IPv4 alone; this stage loads both in one burst from the raw-netlink producer
(the IPv4 /24s, then the IPv6 /48s, shuffled within each family) until both FIB tables hold every
one, checks both tables against the kernel, and takes the daemon's peak memory with both held.
Then it withdraws both the same way. One attempt, run after the timed stages.

BENCH_ROUTES6 sets the IPv6 count; by default 22% of BENCH_ROUTES, the global table's share.
"""

from __future__ import annotations

import os

from benchmarks.inject import arrival, build
from taprouter.controller.openflow.pipeline import Table

V6_SHARE = 0.22
V6_BASE = "2001:db8:1000::"  # /48s counted up from here: 2001:db8:1000::/48, 2001:db8:1001::/48, ...


def count6(routes: int) -> int:
    return int(os.environ.get("BENCH_ROUTES6", round(routes * V6_SHARE)))


def run(bench, results: dict, log, memory) -> None:
    """Load and withdraw both families on `bench` (a RouteBench that is up, its IPv4 table empty);
    memory() gives the memory figures, taken while both are held."""
    n4, n6 = bench.routes, count6(bench.routes)
    index = bench.ifindex()
    base = bench.counts()
    # Built before the clock starts, as routes.py's stages do.
    adds = (build(index, bench.GATEWAY4, arrival(n4, "20.0.0.0", 5))
            + build(index, bench.GATEWAY6, arrival(n6, V6_BASE, 6, 6)))
    dels = (build(index, bench.GATEWAY4, arrival(n4, "20.0.0.0", 7), delete=True)
            + build(index, bench.GATEWAY6, arrival(n6, V6_BASE, 8, 6), delete=True))
    loaded = bench.burst(adds, lambda v4, v6: v4 >= base[0] + n4 and v6 >= base[1] + n6, "full table load",
                         n4 + n6, (Table.FIB4, Table.FIB6))
    figures = {"ipv4_routes": n4, "ipv6_routes": n6, "load": bench.stage_figures(loaded, n4 + n6, "on_switch_s")}
    bench.verify(figures, "full table")
    figures.update(memory())
    log(f"full table: {n4} IPv4 + {n6} IPv6 routes on the switch {loaded['done_s']:.2f} s after the first "
        f"({(n4 + n6) / loaded['done_s']:.0f}/s); producer {loaded['producer_s']:.2f} s; {loaded['cpu_line']}; "
        f"memory: daemon {figures['daemon_rss_mb']} MB (peak so far {figures['daemon_peak_rss_mb']} MB), "
        f"ovs-vswitchd {figures['ovs_rss_mb']} MB")
    gone = bench.burst(dels, lambda v4, v6: v4 <= base[0] and v6 <= base[1], "full table withdrawal",
                       n4 + n6, (Table.FIB4, Table.FIB6))
    figures["withdraw"] = bench.stage_figures(gone, n4 + n6, "off_switch_s")
    bench.verify(figures, "full table withdrawal")
    log(f"full table: all {n4 + n6} routes off the switch in {gone['done_s']:.2f} s; the kernel took "
        f"{gone['producer_s']:.2f} s; {gone['cpu_line']}")
    results["full_table"] = figures
