"""The control socket's server: HTTP/1.1 with JSON bodies on a Unix socket, answered by the daemon.

The daemon hands the server a `DaemonView` and starts and stops it. Each connection gets a
thread (a slow client holds only its own, and only for CLIENT_TIMEOUT), its peer is checked
once (peer.py), and each request is parsed and checked here before the daemon sees it: a
`DaemonView` gets a plain router name, a parsed address, a list of policy names. The answers'
shapes are in schema.py; `curl --unix-socket SOCKET http://taprouter/v1/status` works.

Errors: 400 bad input, 403 a peer that may not use the socket, 404 an unknown path or a router
the daemon does not run (`UnknownRouter`), 405 the wrong method, 411/413 a body without a length
or over MAX_BODY, 431 too many or too long headers (the standard library's limits: 100 headers
of 64 KiB), 500 an exception in the daemon (logged; the server goes on serving), 503 more than
MAX_CLIENTS connections at once. Every error body is {"error": "..."}.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import socket
import stat
import sys
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from socketserver import ThreadingMixIn, UnixStreamServer
from typing import Any, Callable, Protocol
from urllib.parse import parse_qs, urlsplit

from .. import paths
from ..policy.model import NAME as POLICY_NAME
from . import peer
from .metrics import MetricsSnapshot
from .schema import BirdReload, Lookup, PoliciesChanged, PolicyEntry, Reload, RoutePage, Status

LOG = logging.getLogger("taprouter.control")

MAX_BODY = 1 << 20  # bytes: a request body is a router name and a list of policy names
CLIENT_TIMEOUT = 5.0  # seconds a connection may sit idle or trickle a request
MAX_CLIENTS = 64  # connections served at once; more are turned away with 503


class DaemonView(Protocol):
    """What the server asks of the daemon. Called from the server's request threads, several at
    once: answer from published state and never wait on the reconcile thread for long (a client
    gives up after 10 s). Raise `UnknownRouter` for a router the daemon does not run; any other
    exception is a 500. Every answer is JSON-ready (schema.py)."""

    def status(self, router: str | None) -> Status: ...

    def policies(self, router: str | None) -> list[PolicyEntry]: ...

    def lookup(self, router: str, address: str) -> Lookup: ...

    def routes(self, router: str, prefix: str | None, limit: int | None, after: str | None) -> RoutePage: ...

    def reload_bird(self, router: str | None) -> BirdReload: ...

    def reload(self, router: str | None) -> Reload: ...

    def policies_changed(self, router: str, names: list[str] | None,
                         generations: tuple[int, int] | None = None) -> PoliciesChanged: ...

    def metrics(self) -> MetricsSnapshot: ...


class UnknownRouter(LookupError):
    """The daemon runs no router of that name (404)."""

    def __init__(self, router: str):
        self.router = router
        super().__init__(f"no router named {router!r}")


class BadRequest(ValueError):
    """The request cannot be answered as asked; `status` is 400 unless said otherwise."""

    def __init__(self, message: str, status: int = 400):
        self.status = status
        super().__init__(message)


class ControlSocketError(Exception):
    """The socket cannot be set up at its path."""


# --- requests: checked and typed before the daemon sees them (pure) ---------------------------


def _router(value: Any) -> str:
    if not paths.is_plain(value):
        raise BadRequest(f"router: {str(value)[:40]!r} is not a router name")
    return value


def _address(value: Any) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise BadRequest(f"address: {str(value)[:40]!r} is not an IPv4 or IPv6 address") from None


def _names(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(n, str) and POLICY_NAME.fullmatch(n) for n in value):
        raise BadRequest("names: a list of policy names, or null for all of them")
    return value


def _generations(value: Any) -> tuple[int, int]:
    if not (isinstance(value, list) and len(value) == 2 and all(type(g) is int and g >= 0 for g in value)
            and value[0] <= value[1]):
        raise BadRequest("generations: the store's generation before and after the write, [before, after]")
    return value[0], value[1]


def _network(name: str):
    def check(value: Any) -> str:
        try:  # host bits are an operator's slip, not an error: 10.1.2.3/16 means 10.1.0.0/16
            return ipaddress.ip_network(value, strict=False).compressed
        except (TypeError, ValueError):
            raise BadRequest(f"{name}: {str(value)[:40]!r} is not an IPv4 or IPv6 prefix") from None
    return check


def _limit(value: Any) -> int:
    try:
        limit = int(value)
    except (TypeError, ValueError):
        limit = 0
    if not 1 <= limit <= ROUTES_MAX:
        raise BadRequest(f"limit: {str(value)[:40]!r} is not a whole number from 1 to {ROUTES_MAX}")
    return limit


ROUTES_MAX = 1000  # routes a page of /v1/routes holds at most

CHECKS: dict[str, Callable[[Any], Any]] = {"router": _router, "address": _address, "names": _names,
                                           "generations": _generations, "prefix": _network("prefix"),
                                           "after": _network("after"), "limit": _limit}


@dataclass(frozen=True)
class Route:
    method: str
    fields: tuple[str, ...]  # the query parameters (GET) or body keys (POST) it takes
    required: tuple[str, ...]
    answer: Callable[[DaemonView, dict[str, Any]], Any]


ROUTES: dict[str, Route] = {
    "/v1/status": Route("GET", ("router",), (), lambda d, a: d.status(a["router"])),
    "/v1/policies": Route("GET", ("router",), (), lambda d, a: d.policies(a["router"])),
    "/v1/lookup": Route("GET", ("router", "address"), ("router", "address"),
                        lambda d, a: d.lookup(a["router"], a["address"])),
    "/v1/routes": Route("GET", ("router", "prefix", "limit", "after"), ("router",),
                        lambda d, a: d.routes(a["router"], a["prefix"], a["limit"], a["after"])),
    "/v1/bird/reload": Route("POST", ("router",), (), lambda d, a: d.reload_bird(a["router"])),
    "/v1/reload": Route("POST", ("router",), (), lambda d, a: d.reload(a["router"])),
    "/v1/policies/changed": Route("POST", ("router", "names", "generations"), ("router",),
                                  lambda d, a: d.policies_changed(a["router"], a["names"], a["generations"])),
}


def arguments(route: Route, given: dict[str, Any]) -> dict[str, Any]:
    """The route's arguments from a query or a body: every field present (None when not given),
    each checked; an unknown or missing one is a BadRequest."""
    unknown = sorted(set(given) - set(route.fields))
    if unknown:
        raise BadRequest(f"unknown {'parameter' if route.method == 'GET' else 'key'} {unknown[0]!r}; "
                         f"this takes {', '.join(route.fields)}")
    for name in route.required:
        if given.get(name) is None:
            raise BadRequest(f"{name}: required")
    return {name: None if given.get(name) is None else CHECKS[name](given[name]) for name in route.fields}


def query(text: str) -> dict[str, str]:
    try:
        parsed = parse_qs(text, keep_blank_values=True, strict_parsing=bool(text), max_num_fields=16)
    except ValueError as exc:
        raise BadRequest(f"unreadable query: {exc}") from None
    repeated = sorted(k for k, v in parsed.items() if len(v) > 1)
    if repeated:
        raise BadRequest(f"{repeated[0]}: given more than once")
    return {k: v[0] for k, v in parsed.items()}


def body(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise BadRequest(f"the body is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise BadRequest("the body must be a JSON object")
    return value


# --- the server (I/O) ---------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "taprouter"
    timeout = CLIENT_TIMEOUT
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.peer = peer.check(self.connection, self.server.gid)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def _serve(self, method: str) -> None:
        if self.peer is None:
            return self._reply(403, {"error": "only root and the control group may use this socket"}, close=True)
        try:
            # Read first, whatever the answer: a body left unread would break the client's write.
            data = self._body()
        except BadRequest as exc:
            return self._reply(exc.status, {"error": str(exc)}, close=True)
        url = urlsplit(self.path)
        route = ROUTES.get(url.path)
        if route is None:
            return self._reply(404, {"error": f"no such path {url.path[:80]!r}; try /v1/status"})
        if route.method != method:
            return self._reply(405, {"error": f"{url.path} takes {route.method}"}, {"Allow": route.method})
        try:
            args = arguments(route, query(url.query) if method == "GET" else body(data))
        except BadRequest as exc:
            return self._reply(exc.status, {"error": str(exc)})
        try:
            answer = route.answer(self.server.daemon, args)
        except UnknownRouter as exc:
            return self._reply(404, {"error": str(exc)})
        except Exception as exc:  # the daemon's fault, not the client's: say so, and keep serving
            LOG.exception("control socket: %s %s failed", method, url.path)
            return self._reply(500, {"error": f"the daemon failed to answer: {type(exc).__name__}: {exc}"})
        try:
            self._reply(200, answer)
        except (TypeError, ValueError) as exc:
            LOG.error("control socket: %s %s: the daemon's answer is not JSON: %s", method, url.path, exc)
            self._reply(500, {"error": f"the daemon's answer is not JSON: {exc}"})

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise BadRequest("send the body with a Content-Length", 411)
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            raise BadRequest("Content-Length is not a number") from None
        if not 0 <= length <= MAX_BODY:
            raise BadRequest(f"the body may be {MAX_BODY} bytes at most", 413)
        return self.rfile.read(length)

    def _reply(self, status: int, answer: Any, headers: dict[str, str] | None = None, close: bool = False) -> None:
        data = json.dumps(answer).encode()  # before anything is sent: a TypeError leaves room for a 500
        headers = {"Content-Type": "application/json", "Content-Length": str(len(data)), **(headers or {})}
        if close:  # what is left of the request must not be read as the next one
            self.close_connection = True
            headers["Connection"] = "close"
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def address_string(self) -> str:
        return f"pid {self.peer.pid}" if getattr(self, "peer", None) else "a peer"

    def log_message(self, format: str, *args: Any) -> None:
        LOG.debug("control socket: %s: %s", self.address_string(), format % args)


class _Server(ThreadingMixIn, UnixStreamServer):
    daemon_threads = True  # a client that never finishes must not hold up the daemon's exit
    block_on_close = False

    def __init__(self, path: str, daemon: DaemonView, gid: int | None):
        self.daemon = daemon
        self.gid = gid
        self._room = threading.BoundedSemaphore(MAX_CLIENTS)
        super().__init__(path, _Handler)

    def process_request(self, request, client_address) -> None:
        if not self._room.acquire(blocking=False):
            LOG.warning("control socket: %d connections already; turning one away", MAX_CLIENTS)
            _turn_away(request)
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def handle_error(self, request, client_address) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):
            LOG.debug("control socket: a client went away: %s", error)  # its loss, not ours
        else:
            LOG.exception("control socket: a request failed")

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._room.release()


def _turn_away(sock: socket.socket) -> None:
    data = json.dumps({"error": "too many connections to the control socket"}).encode()
    try:
        sock.setblocking(False)  # a new connection's send buffer is empty: this never waits
        sock.send(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n"
                  b"Content-Length: %d\r\n\r\n%s" % (len(data), data))
    except OSError:
        pass


class ControlServer:
    def __init__(self, path: str | Path, daemon: DaemonView, group: str | None = "taprouter"):
        self.path = Path(path)
        self.daemon = daemon
        self.group = group
        self.gid: int | None = None
        self._server: _Server | None = None
        self._inode: int | None = None

    def start(self) -> None:
        """Listen on the path; returns once connections are accepted. A stale socket left by a
        daemon that died is replaced; a live one, or a file that is not a socket, is refused."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _clear_stale(self.path)
        # Bound under a name of our own, given its owner and mode, then moved into place: the
        # path never names a socket with the wrong permissions, whatever the umask.
        staging = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        staging.unlink(missing_ok=True)
        server = _Server(str(staging), self.daemon, None)
        try:
            server.gid = self.gid = peer.secure(staging, self.group)
            os.replace(staging, self.path)
        except BaseException:
            server.server_close()
            staging.unlink(missing_ok=True)
            raise
        self._inode = self.path.stat().st_ino
        self._server = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="control",
                         daemon=True).start()
        LOG.info("control socket on %s (%s)", self.path,
                 f"root and group {self.group}" if self.gid is not None else "root only")

    def stop(self) -> None:
        """Stop accepting, close the socket and remove its file (unless another daemon's socket
        has taken the path since)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        try:
            if self.path.stat().st_ino == self._inode:
                self.path.unlink()
        except FileNotFoundError:
            pass


def _clear_stale(path: Path) -> None:
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ControlSocketError(f"{path} exists and is not a socket; move it away or choose another path")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(str(path))
        except (ConnectionRefusedError, FileNotFoundError):
            path.unlink(missing_ok=True)  # nobody listens: a daemon that died left it
            return
        except OSError as exc:
            raise ControlSocketError(f"{path}: cannot tell whether a daemon uses it: {exc.strerror}") from None
    raise ControlSocketError(f"another daemon answers on {path}")
