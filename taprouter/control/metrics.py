"""Prometheus metrics: the daemon's figures as a frozen snapshot, and the metric families they make.

The daemon keeps a `MetricsSnapshot` current (it already counts all of this for status) and hands
it over whole; a scrape only formats it. Names follow Prometheus' conventions: a `taprouter_`
prefix, `_total` on counters, seconds and bytes as units, and the labels `router` and `port`
(plus `reason`, `meter`, `kind`, `target`, `protocol` and `policy` where a figure has several).

`families(snapshot)` is the whole set as prometheus_client metric families, and
`SnapshotCollector` serves them to any prometheus_client registry. The /metrics server
(scrape.py) formats the per-policy families itself, as they run to tens of thousands of series.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, replace
from typing import Callable, Iterable, Iterator

from prometheus_client.metrics_core import (CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily,
                                            Metric)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

# Upper bounds (seconds) of the pass-duration histogram: a quiet pass takes a millisecond, a slice
# of a table load a few hundred, a full read-back of 1M routes several seconds.
PASS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, math.inf)


@dataclass(frozen=True, slots=True)
class PacketCount:
    port: int
    reason: str  # PacketIn: OpenFlow's reason (no_match, action, invalid_ttl); PacketOut: why it was sent
    packets: int


@dataclass(frozen=True, slots=True)
class Count:
    name: str  # a meter (punt drops) or a kind of relay error
    value: int


@dataclass(frozen=True, slots=True)
class Histogram:
    """Cumulative counts per upper bound (the last bound is +Inf, so its count is every pass)."""

    bounds: tuple[float, ...] = PASS_BUCKETS
    counts: tuple[int, ...] = (0,) * len(PASS_BUCKETS)
    sum: float = 0.0

    def __post_init__(self) -> None:
        if len(self.bounds) != len(self.counts) or not self.bounds or self.bounds[-1] != math.inf:
            raise ValueError("a histogram needs one count per bound and +Inf as its last bound")

    @property
    def count(self) -> int:
        return self.counts[-1]

    def observe(self, value: float) -> Histogram:
        """This histogram with one more observation (for the daemon, which keeps it)."""
        first = bisect.bisect_left(self.bounds, value)
        counts = self.counts[:first] + tuple(c + 1 for c in self.counts[first:])
        return replace(self, counts=counts, sum=self.sum + value)


@dataclass(frozen=True, slots=True)
class BirdProtocolState:
    name: str
    proto: str  # BGP, OSPF, ...
    state: str  # BIRD's words: up, down, start, flush
    info: str  # Established, Running, Active, ...


@dataclass(frozen=True, slots=True)
class PolicyFigures:
    name: str
    packets: int
    bytes: int
    state: str  # installed, pending, disabled, expired, failed


@dataclass(frozen=True, slots=True)
class PolicyColumns:
    """A router's policies' figures, a column each: names, packets, bytes, states, in one order. A
    router has tens of thousands; building an object per policy on every scrape cost more than
    formatting them (the daemon keeps each column while it holds). Iterating gives PolicyFigures."""

    names: tuple[str, ...] = ()
    packets: tuple[int, ...] = ()
    bytes: tuple[int, ...] = ()
    states: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not len(self.names) == len(self.packets) == len(self.bytes) == len(self.states):
            raise ValueError("policy columns of different lengths")

    def __iter__(self) -> Iterator[PolicyFigures]:
        return map(PolicyFigures, self.names, self.packets, self.bytes, self.states)

    def __len__(self) -> int:
        return len(self.names)

    @classmethod
    def of(cls, figures: Iterable[PolicyFigures]) -> "PolicyColumns":
        rows = [(p.name, p.packets, p.bytes, p.state) for p in figures]
        return cls(*(tuple(column) for column in zip(*rows))) if rows else cls()


@dataclass(frozen=True, slots=True)
class RouterFigures:
    router: str
    switch_connected: bool = False
    switch_reconnects: int = 0
    packet_ins: tuple[PacketCount, ...] = ()
    packet_outs: tuple[PacketCount, ...] = ()
    punt_drops: tuple[Count, ...] = ()  # packets each punt meter dropped
    relay_errors: tuple[Count, ...] = ()  # runt, oversize, unknown_port, write_errors, send_dropped, ...
    ingress_drops: tuple[PacketCount, ...] = ()  # routers with VLANs: unknown_vlan, double_tagged per port
    kernel_routes: int = 0
    fib_switched: int = 0
    fib_to_kernel: int = 0
    unresolved_next_hops: int = 0
    backlog: int = 0  # routes changed in the kernel and not yet planned
    passes: Histogram = Histogram()
    bird: tuple[BirdProtocolState, ...] = ()
    policies: PolicyColumns = PolicyColumns()
    ha_role: str | None = None  # None: HA off
    ha_generation: int = 0
    ha_stale_flows: int = 0


HA_ROLES = ("starting", "standby", "master", "fenced")


@dataclass(frozen=True, slots=True)
class MetricsSnapshot:
    routers: tuple[RouterFigures, ...] = ()


def _family(kind, name: str, doc: str, labels: list[str], rows) -> Metric:
    family = kind(name, doc, labels=labels)
    for values, value in rows:
        family.add_metric(values, value)
    return family


def router_families(snapshot: MetricsSnapshot) -> Iterator[Metric]:
    """Every family but the per-policy ones: a few hundred series for a router of 48 ports."""
    routers = snapshot.routers
    yield _family(CounterMetricFamily, "taprouter_packet_ins", "PacketIns from the switch, by port and reason.",
                  ["router", "port", "reason"],
                  (([r.router, str(p.port), p.reason], p.packets) for r in routers for p in r.packet_ins))
    yield _family(CounterMetricFamily, "taprouter_packet_outs", "PacketOuts to the switch, by port and reason.",
                  ["router", "port", "reason"],
                  (([r.router, str(p.port), p.reason], p.packets) for r in routers for p in r.packet_outs))
    yield _family(CounterMetricFamily, "taprouter_punt_dropped_packets",
                  "Packets a punt meter dropped on their way to the kernel.", ["router", "meter"],
                  (([r.router, c.name], c.value) for r in routers for c in r.punt_drops))
    yield _family(CounterMetricFamily, "taprouter_ingress_dropped_packets",
                  "Frames the switch's ingress table dropped and counted (routers with VLANs), by port and reason.",
                  ["router", "port", "reason"],
                  (([r.router, str(d.port), d.reason], d.packets) for r in routers for d in r.ingress_drops))
    yield _family(CounterMetricFamily, "taprouter_relay_errors",
                  "Frames the relay between switch and TAPs could not pass on, by kind.", ["router", "kind"],
                  (([r.router, c.name], c.value) for r in routers for c in r.relay_errors))
    yield _family(GaugeMetricFamily, "taprouter_kernel_routes",
                  "Routes in the router's main table, but for link-local and multicast ones (no FIB carries them).",
                  ["router"], (([r.router], r.kernel_routes) for r in routers))
    yield _family(GaugeMetricFamily, "taprouter_fib_entries",
                  "Route flows on the switch: switched through a group, or sent to the kernel.",
                  ["router", "target"],
                  (([r.router, target], value) for r in routers
                   for target, value in (("switched", r.fib_switched), ("kernel", r.fib_to_kernel))))
    yield _family(GaugeMetricFamily, "taprouter_unresolved_next_hops",
                  "Next hops whose neighbour the kernel has not resolved yet.", ["router"],
                  (([r.router], r.unresolved_next_hops) for r in routers))
    yield _family(GaugeMetricFamily, "taprouter_reconcile_backlog_routes",
                  "Routes changed in the kernel and not yet planned for the switch.", ["router"],
                  (([r.router], r.backlog) for r in routers))
    passes = HistogramMetricFamily("taprouter_reconcile_pass_duration_seconds",
                                   "Time a reconcile pass took, planning and sending.", labels=["router"])
    for r in routers:
        h = r.passes
        passes.add_metric([r.router], [(floatToGoString(b), c) for b, c in zip(h.bounds, h.counts)], h.sum)
    yield passes
    yield _family(GaugeMetricFamily, "taprouter_switch_connected", "Whether the switch is connected (1) or not (0).",
                  ["router"], (([r.router], int(r.switch_connected)) for r in routers))
    yield _family(CounterMetricFamily, "taprouter_switch_reconnects",
                  "Connections of the switch after its first since the daemon started.", ["router"],
                  (([r.router], r.switch_reconnects) for r in routers))
    yield _family(GaugeMetricFamily, "taprouter_bird_protocol_up",
                  "Whether BIRD has the protocol up (1) or not (0); state and info in BIRD's words.",
                  ["router", "protocol", "proto", "state", "info"],
                  (([r.router, p.name, p.proto, p.state, p.info], int(p.state == "up"))
                   for r in routers for p in r.bird))
    ha = [r for r in routers if r.ha_role is not None]
    if ha:
        yield _family(GaugeMetricFamily, "taprouter_ha_role", "The router's HA role: 1 for the one it is in.",
                      ["router", "role"], (([r.router, role], int(r.ha_role == role)) for r in ha for role in HA_ROLES))
        yield _family(GaugeMetricFamily, "taprouter_ha_generation",
                      "The HA lease's generation, the OpenFlow generation id (one more at each takeover).", ["router"],
                      (([r.router], r.ha_generation) for r in ha))
        yield _family(GaugeMetricFamily, "taprouter_ha_stale_flows",
                      "Route flows a new master holds until its BIRD has converged.", ["router"],
                      (([r.router], r.ha_stale_flows) for r in ha))


# The per-policy families: (name as exposed, type, help, the figure it shows). The /metrics
# server formats these itself (scrape.py), to the same text.
POLICY_FAMILIES: tuple[tuple[str, str, str, Callable[[PolicyFigures], int]], ...] = (
    ("taprouter_policy_packets_total", "counter", "Packets a policy's flows matched.", lambda p: p.packets),
    ("taprouter_policy_bytes_total", "counter", "Bytes a policy's flows matched.", lambda p: p.bytes),
    ("taprouter_policy_installed", "gauge",
     "Whether a policy is on its switch (1) or not (0); state says where it stands.",
     lambda p: int(p.state == "installed")),
)


def policy_families(snapshot: MetricsSnapshot) -> Iterator[Metric]:
    for name, kind, doc, figure in POLICY_FAMILIES:
        if kind == "counter":
            family: Metric = CounterMetricFamily(name, doc, labels=["router", "policy"])
        else:
            family = GaugeMetricFamily(name, doc, labels=["router", "policy", "state"])
        for r in snapshot.routers:
            for p in r.policies:
                family.add_metric([r.router, p.name] + ([] if kind == "counter" else [p.state]), figure(p))
        yield family


def families(snapshot: MetricsSnapshot) -> Iterator[Metric]:
    yield from router_families(snapshot)
    yield from policy_families(snapshot)


class SnapshotCollector(Collector):
    """A prometheus_client collector of the daemon's current snapshot: register it with a
    CollectorRegistry and the library's own exposition serves every family."""

    def __init__(self, source: Callable[[], MetricsSnapshot]):
        self.source = source

    def collect(self) -> Iterator[Metric]:
        return families(self.source())
