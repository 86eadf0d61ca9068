"""Metrics snapshots for tests and the scrape benchmark: small ones, and one the size of a real router."""

from __future__ import annotations

from taprouter.control.metrics import (BirdProtocolState, Count, Histogram, MetricsSnapshot, PacketCount,
                                       PolicyColumns, PolicyFigures, RouterFigures)

PASS_SECONDS = (0.0004, 0.003, 0.003, 0.07, 1.5, 30.0)


def figures(name: str, *, ports: int = 3, protocols: int = 2, policies: int = 3, routes: int = 1000) -> RouterFigures:
    """A router's metrics; distinct values everywhere, so a figure shown under another's name shows."""
    passes = Histogram()
    for seconds in PASS_SECONDS:
        passes = passes.observe(seconds)
    return RouterFigures(
        router=name, switch_connected=True, switch_reconnects=2,
        packet_ins=tuple(PacketCount(n, reason, 100 * n + i) for n in range(1, ports + 1)
                         for i, reason in enumerate(("action", "no_match", "invalid_ttl"))),
        packet_outs=tuple(PacketCount(n, "relay", 50 * n) for n in range(1, ports + 1)),
        punt_drops=(Count("arp_nd", 7), Count("to_router", 8), Count("slow_path", 9)),
        relay_errors=(Count("runt", 1), Count("oversize", 2), Count("unknown_port", 3), Count("write_errors", 4),
                      Count("send_dropped", 5)),
        ingress_drops=(PacketCount(1, "unknown_vlan", 11), PacketCount(1, "double_tagged", 12)),
        kernel_routes=routes, fib_switched=routes - 17, fib_to_kernel=19, unresolved_next_hops=4, backlog=65536,
        passes=passes,
        bird=tuple(BirdProtocolState(f"bgp{i}", "BGP", "up" if i % 2 else "start", "Established" if i % 2 else "Active")
                   for i in range(protocols)),
        policies=PolicyColumns.of(PolicyFigures(f"policy-{i}", 3 * i, 300 * i + 1_234_567,
                                                ("installed", "pending", "failed")[i % 3]) for i in range(policies)))


def real_router() -> MetricsSnapshot:
    """A snapshot the size of a real router: 48 ports, 50 BIRD protocols, 10,000 policies, 1M routes."""
    return MetricsSnapshot((figures("r1", ports=48, protocols=50, policies=10_000, routes=1_000_000),))
