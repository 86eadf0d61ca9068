"""/metrics over HTTP: the snapshot in Prometheus' text format, cheap enough for a full router.

prometheus_client formats a few microseconds a series; a router with 10,000 policies has 30,000
policy series, which would cost some 140 ms a scrape that way. So the router families go through
prometheus_client's own `generate_latest`, and the per-policy families are written here, a line
per policy from label text kept per policy name, to text that parses to the same families as
`metrics.policy_families` (tests/test_metrics.py holds the two together). Nothing is compressed:
gzip of 2 MB would cost more than the rest of the scrape.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

from .metrics import POLICY_FAMILIES, MetricsSnapshot, PolicyFigures, router_families

LOG = logging.getLogger("taprouter.metrics")

DEFAULT_PORT = 9362
CLIENT_TIMEOUT = 5.0


def _escape(value: str) -> str:
    """A label value as the text format writes it."""
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _help(doc: str) -> str:
    return doc.replace("\\", r"\\").replace("\n", r"\n")


class _StateText(dict):
    """A state -> the end of its taprouter_policy_installed line (its label, then the value)."""

    def __missing__(self, state: str) -> str:
        text = self[state] = f',state="{_escape(state)}"}} {int(state == "installed")}\n'
        return text


class PolicyText:
    """Writes the per-policy families. Keeps each policy's label text between scrapes, as policy
    names change seldom; forgets the names no snapshot has shown once it holds twice as many."""

    def __init__(self) -> None:
        self._labels: dict[str, dict[str, str]] = {}  # router -> policy name -> its label text
        self._states = _StateText()

    def _label_texts(self, router: str, policies: tuple[PolicyFigures, ...]) -> list[str]:
        cache = self._labels.setdefault(router, {})
        if len(cache) > 2 * len(policies) + 1024:
            cache.clear()
        texts = [cache.get(p.name) for p in policies]
        if None in texts:
            escaped = _escape(router)
            for i, p in enumerate(policies):
                if texts[i] is None:
                    texts[i] = cache[p.name] = f'router="{escaped}",policy="{_escape(p.name)}"'
        return texts

    def render(self, snapshot: MetricsSnapshot) -> str:
        per_router = [(r.policies, self._label_texts(r.router, r.policies)) for r in snapshot.routers]
        (packets, _, doc_p, _), (octets, _, doc_b, _), (installed, _, doc_i, _) = POLICY_FAMILIES
        state = self._states
        out = [f"# HELP {packets} {_help(doc_p)}\n# TYPE {packets} counter\n"]
        for policies, labels in per_router:
            out += [f"{packets}{{{t}}} {p.packets}\n" for t, p in zip(labels, policies)]
        out.append(f"# HELP {octets} {_help(doc_b)}\n# TYPE {octets} counter\n")
        for policies, labels in per_router:
            out += [f"{octets}{{{t}}} {p.bytes}\n" for t, p in zip(labels, policies)]
        out.append(f"# HELP {installed} {_help(doc_i)}\n# TYPE {installed} gauge\n")
        for policies, labels in per_router:
            out += [f"{installed}{{{t}{state[p.state]}" for t, p in zip(labels, policies)]
        return "".join(out)


class _Families:
    """What generate_latest asks of a registry: collect()."""

    def __init__(self, snapshot: MetricsSnapshot):
        self.snapshot = snapshot

    def collect(self):
        return router_families(self.snapshot)


def exposition(snapshot: MetricsSnapshot, policy_text: PolicyText) -> bytes:
    """The whole scrape: the router families by prometheus_client, then the policy families."""
    return generate_latest(_Families(snapshot)) + policy_text.render(snapshot).encode()


class _Handler(BaseHTTPRequestHandler):
    timeout = CLIENT_TIMEOUT
    server: _Server

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path != "/metrics":
            return self._send(404, b"taprouter: metrics are at /metrics\n", "text/plain; charset=utf-8")
        try:
            data = self.server.render()
        except Exception:
            LOG.exception("metrics: a scrape failed")
            return self._send(500, b"taprouter: the daemon failed to give its metrics\n",
                              "text/plain; charset=utf-8")
        self._send(200, data, CONTENT_TYPE_PLAIN_0_0_4)

    def _send(self, status: int, data: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        LOG.debug("metrics: %s: %s", self.address_string(), format % args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], family: int, render: Callable[[], bytes]):
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

    def render(self) -> bytes:
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
