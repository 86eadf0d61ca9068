"""/metrics over HTTP: the snapshot in Prometheus' text format, cheap enough for a full router.

prometheus_client formats a few microseconds a series; a router with 10,000 policies has 30,000
policy series, which would cost some 140 ms a scrape that way. So the router families go through
prometheus_client's own `generate_latest`, and the per-policy families are written here: each
router's lines kept as a template while its policy names stay the same, the figures filled in by
one `%` a family, to text that parses to the same families as `metrics.policy_families`
(tests/test_metrics.py holds the two together). The answer goes out in pieces, never joined, and
uncompressed: gzip of 2 MB would cost more than the rest of the scrape (benchmarks/scrape.py).
"""

from __future__ import annotations

import logging
import socket
import socketserver
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

from .metrics import POLICY_FAMILIES, MetricsSnapshot, PolicyColumns, router_families

LOG = logging.getLogger("taprouter.metrics")

CLIENT_TIMEOUT = 5.0  # seconds a scraper may sit idle or trickle its request


def _escape(value: str) -> str:
    """A label value as the text format writes it."""
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _help(doc: str) -> str:
    return doc.replace("\\", r"\\").replace("\n", r"\n")


class _StateText(dict):
    """A state -> the end of its taprouter_policy_installed line (its label, then the value)."""

    def __missing__(self, state: str) -> bytes:
        text = self[state] = f',state="{_escape(state)}"}} {int(state == "installed")}\n'.encode()
        return text


@dataclass(frozen=True)
class _Templates:
    """A router's lines of each policy family, with a %d (counters) or %s (the state's end) where
    each policy's figure goes."""

    names: tuple[str, ...]
    lines: tuple[bytes, bytes, bytes]  # in POLICY_FAMILIES' order


# What fills each family's template, in POLICY_FAMILIES' order, from a router's policy columns.
_FILLS: tuple[Callable[[PolicyColumns, _StateText], tuple], ...] = (
    lambda policies, states: policies.packets,
    lambda policies, states: policies.bytes,
    lambda policies, states: tuple(map(states.__getitem__, policies.states)),
)


class PolicyText:
    """Writes the per-policy families. Each router's lines are kept as templates while its policy
    names stay the same, so a scrape fills in the figures with one C-level % a family."""

    def __init__(self) -> None:
        self._templates: dict[str, _Templates] = {}
        self._states = _StateText()

    def _for(self, router: str, names: tuple[str, ...]) -> _Templates:
        kept = self._templates.get(router)
        if kept is not None and kept.names == names:
            return kept
        labels = [f'router="{_escape(router)}",policy="{_escape(name)}"'.replace("%", "%%") for name in names]
        (packets, *_), (octets, *_), (installed, *_) = POLICY_FAMILIES
        return _Templates(names, ("".join([f"{packets}{{{t}}} %d\n" for t in labels]).encode(),
                                  "".join([f"{octets}{{{t}}} %d\n" for t in labels]).encode(),
                                  "".join([f"{installed}{{{t}%s" for t in labels]).encode()))

    def render(self, snapshot: MetricsSnapshot) -> list[bytes]:
        """The text in pieces, to be written one after the other: joining 2 MB would cost more."""
        templates = {r.router: self._for(r.router, r.policies.names) for r in snapshot.routers}
        self._templates = templates  # routers gone from the snapshot are forgotten
        out = []
        for i, (name, kind, doc, _) in enumerate(POLICY_FAMILIES):
            out.append(f"# HELP {name} {_help(doc)}\n# TYPE {name} {kind}\n".encode())
            out += [templates[r.router].lines[i] % _FILLS[i](r.policies, self._states) for r in snapshot.routers]
        return out


class _Families:
    """What generate_latest asks of a registry: collect()."""

    def __init__(self, snapshot: MetricsSnapshot):
        self.snapshot = snapshot

    def collect(self):
        return router_families(self.snapshot)


def exposition(snapshot: MetricsSnapshot, policy_text: PolicyText) -> list[bytes]:
    """The whole scrape, in pieces: the router families by prometheus_client, then the policy families."""
    return [generate_latest(_Families(snapshot)), *policy_text.render(snapshot)]


class _Handler(BaseHTTPRequestHandler):
    timeout = CLIENT_TIMEOUT
    server: _Server

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path != "/metrics":
            return self._send(404, [b"taprouter: metrics are at /metrics\n"], "text/plain; charset=utf-8")
        try:
            pieces = self.server.render()
        except Exception:
            LOG.exception("metrics: a scrape failed")
            return self._send(500, [b"taprouter: the daemon failed to give its metrics\n"],
                              "text/plain; charset=utf-8")
        self._send(200, pieces, CONTENT_TYPE_PLAIN_0_0_4)

    def _send(self, status: int, pieces: list[bytes], content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(sum(map(len, pieces))))
        self.end_headers()
        for piece in pieces:
            self.wfile.write(piece)

    def log_message(self, format: str, *args: Any) -> None:
        LOG.debug("metrics: %s: %s", self.address_string(), format % args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], family: int, render: Callable[[], list[bytes]]):
        self.address_family = family
        self.render = render
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer's own asks the resolver for the host's full name, which nothing here uses.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]


class MetricsServer:
    """Serves /metrics on HOST:PORT (IPv4 or IPv6; port 0 picks one, then `port` says which)."""

    def __init__(self, host: str, port: int, daemon: Any):
        self.host = host.strip("[]")
        self.port = port
        self.daemon = daemon  # a control.server.DaemonView: only its metrics() is asked for
        self._policy_text = PolicyText()
        self._lock = threading.Lock()  # PolicyText's cache is not for two scrapes at once
        self._server: _Server | None = None

    def render(self) -> list[bytes]:
        snapshot = self.daemon.metrics()
        with self._lock:
            return exposition(snapshot, self._policy_text)

    def start(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        server = _Server((self.host, self.port), family, self.render)
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="metrics",
                         daemon=True).start()
        LOG.info("metrics on http://%s/metrics", f"[{self.host}]:{self.port}" if family == socket.AF_INET6
                 else f"{self.host}:{self.port}")

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
