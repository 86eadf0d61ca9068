"""/metrics scraped over HTTP and read back with prometheus_client's own parser, value by value."""

from __future__ import annotations

import math
import socket
import urllib.error
import urllib.request
from dataclasses import replace

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from fakemetrics import PASS_SECONDS, figures, real_router
from taprouter.control.metrics import (PASS_BUCKETS, Histogram, MetricsSnapshot, PolicyColumns, PolicyFigures,
                                       SnapshotCollector, policy_families)
from taprouter.control.scrape import MetricsServer, PolicyText


class Source:
    """The one thing the metrics server asks of the daemon."""

    def __init__(self, snapshot: MetricsSnapshot):
        self.snapshot = snapshot
        self.fail = False

    def metrics(self) -> MetricsSnapshot:
        if self.fail:
            raise RuntimeError("no snapshot")
        return self.snapshot


@pytest.fixture
def source():
    return Source(MetricsSnapshot((figures("r1"), figures("r2", ports=2, protocols=3, policies=5))))


@pytest.fixture
def server(source):
    metrics = MetricsServer("127.0.0.1", 0, source)
    metrics.start()
    yield metrics
    metrics.stop()


def scrape(host: str, port: int, path: str = "/metrics") -> tuple[str, str]:
    with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=10) as response:
        return response.headers["Content-Type"], response.read().decode()


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = (s.name, frozenset(s.labels.items()))
            assert key not in found, f"{key} twice"
            found[key] = s.value
    return found


def expected(snapshot: MetricsSnapshot) -> dict[tuple[str, frozenset], float]:
    """Every series the snapshot must show and its value, written out apart from metrics.py."""
    out = {}

    def put(name, value, **labels):
        out[(name, frozenset(labels.items()))] = float(value)

    for r in snapshot.routers:
        router = r.router
        for p in r.packet_ins:
            put("taprouter_packet_ins_total", p.packets, router=router, port=str(p.port), reason=p.reason)
        for p in r.packet_outs:
            put("taprouter_packet_outs_total", p.packets, router=router, port=str(p.port), reason=p.reason)
        for c in r.punt_drops:
            put("taprouter_punt_dropped_packets_total", c.value, router=router, meter=c.name)
        for c in r.relay_errors:
            put("taprouter_relay_errors_total", c.value, router=router, kind=c.name)
        for d in r.ingress_drops:
            put("taprouter_ingress_dropped_packets_total", d.packets, router=router, port=str(d.port), reason=d.reason)
        put("taprouter_kernel_routes", r.kernel_routes, router=router)
        put("taprouter_fib_entries", r.fib_switched, router=router, target="switched")
        put("taprouter_fib_entries", r.fib_to_kernel, router=router, target="kernel")
        put("taprouter_unresolved_next_hops", r.unresolved_next_hops, router=router)
        put("taprouter_reconcile_backlog_routes", r.backlog, router=router)
        for bound in PASS_BUCKETS:
            put("taprouter_reconcile_pass_duration_seconds_bucket", sum(s <= bound for s in PASS_SECONDS),
                router=router, le="+Inf" if bound == math.inf else str(bound))
        put("taprouter_reconcile_pass_duration_seconds_count", len(PASS_SECONDS), router=router)
        put("taprouter_reconcile_pass_duration_seconds_sum", sum(PASS_SECONDS), router=router)
        put("taprouter_switch_connected", r.switch_connected, router=router)
        put("taprouter_switch_reconnects_total", r.switch_reconnects, router=router)
        for p in r.bird:
            put("taprouter_bird_protocol_up", p.state == "up", router=router, protocol=p.name, proto=p.proto,
                state=p.state, info=p.info)
        for p in r.policies:
            put("taprouter_policy_packets_total", p.packets, router=router, policy=p.name)
            put("taprouter_policy_bytes_total", p.bytes, router=router, policy=p.name)
            put("taprouter_policy_installed", p.state == "installed", router=router, policy=p.name, state=p.state)
    return out


def test_a_scrape_shows_every_figure_of_the_snapshot(server, source):
    content_type, text = scrape("127.0.0.1", server.port)
    assert content_type.startswith("text/plain; version=0.0.4")
    got, want = samples(text), expected(source.snapshot)
    assert got.keys() == want.keys()
    wrong = {k: (got[k], want[k]) for k in want if not math.isclose(got[k], want[k])}
    assert not wrong
    assert got[("taprouter_kernel_routes", frozenset({("router", "r2")}))] == 1000


def test_a_scrape_follows_the_daemons_snapshot(server, source):
    source.snapshot = MetricsSnapshot((replace(figures("r1"), kernel_routes=7, switch_connected=False),))
    got = samples(scrape("127.0.0.1", server.port)[1])
    assert got == expected(source.snapshot)
    assert got[("taprouter_kernel_routes", frozenset({("router", "r1")}))] == 7


def test_names_follow_prometheus_conventions(server):
    families = list(text_string_to_metric_families(scrape("127.0.0.1", server.port)[1]))
    assert len(families) == 16
    for family in families:
        assert family.name.startswith("taprouter_") and family.documentation, family.name
        for s in family.samples:
            assert "router" in s.labels, s
            assert s.name.endswith("_total") == (family.type == "counter"), s.name
        if family.type == "histogram":
            assert family.name.endswith("_seconds")
    per_port = {f.name for f in families if any("port" in s.labels for s in f.samples)}
    assert per_port == {"taprouter_packet_ins", "taprouter_packet_outs", "taprouter_ingress_dropped_packets"}


def test_ipv6(source):
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    metrics = MetricsServer("[::1]", 0, source)
    metrics.start()
    try:
        assert samples(scrape("[::1]", metrics.port)[1]) == expected(source.snapshot)
    finally:
        metrics.stop()


def test_errors_and_other_paths(server, source):
    with pytest.raises(urllib.error.HTTPError) as missing:
        scrape("127.0.0.1", server.port, "/")
    assert missing.value.code == 404
    source.fail = True
    with pytest.raises(urllib.error.HTTPError) as failed:
        scrape("127.0.0.1", server.port)
    assert failed.value.code == 500
    source.fail = False
    assert samples(scrape("127.0.0.1", server.port)[1]) == expected(source.snapshot)


def test_the_collector_serves_the_same_through_a_registry(source):
    registry = CollectorRegistry()
    registry.register(SnapshotCollector(source.metrics))
    assert samples(generate_latest(registry).decode()) == expected(source.snapshot)


class _Policies:
    def __init__(self, snapshot):
        self.snapshot = snapshot

    def collect(self):
        return policy_families(self.snapshot)


def _same_as_prometheus_client(snapshot: MetricsSnapshot, text: PolicyText) -> None:
    ours = list(text_string_to_metric_families(b"".join(text.render(snapshot)).decode()))
    theirs = list(text_string_to_metric_families(generate_latest(_Policies(snapshot)).decode()))
    assert ours == theirs and ours  # names, help, types, every sample's labels and value


def test_the_policy_text_is_what_prometheus_client_would_write():
    text = PolicyText()
    _same_as_prometheus_client(real_router(), text)
    odd = figures("r1", policies=2)
    odd = replace(odd, policies=PolicyColumns.of([*odd.policies, PolicyFigures("x:y.z-1", 2**53, 0, 'odd "state"\\\n'),
                                                  PolicyFigures("50%off", 1, 2, "100%")]))
    _same_as_prometheus_client(MetricsSnapshot((odd, replace(odd, router="r2"))), text)
    _same_as_prometheus_client(MetricsSnapshot(()), text)
    # Renamed policies show their new names, whatever the cache held.
    renamed = replace(odd, policies=PolicyColumns.of(replace(p, name=p.name + "-new") for p in odd.policies))
    _same_as_prometheus_client(MetricsSnapshot((renamed,)), text)


def test_histogram_observations_land_in_every_bucket_at_or_above_them():
    h = Histogram(bounds=(0.1, 1.0, math.inf), counts=(0, 0, 0))
    for value in (0.05, 0.1, 0.5, 7.0):
        h = h.observe(value)
    assert h.counts == (2, 3, 4) and h.count == 4 and h.sum == pytest.approx(7.65)
    with pytest.raises(ValueError):
        Histogram(bounds=(0.1, 1.0), counts=(0, 0))
    with pytest.raises(ValueError):
        Histogram(bounds=(0.1, math.inf), counts=(0,))
