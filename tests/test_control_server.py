"""The control socket's server over a real Unix socket and real HTTP, with an in-memory daemon."""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import stat
import subprocess
import time

import pytest

from fakedaemon import FakeDaemon, router_status
from taprouter.control import server as server_mod
from taprouter.control.client import ControlClient, ControlError, ControlUnavailable
from taprouter.control.server import MAX_BODY, ControlServer, ControlSocketError


@pytest.fixture
def daemon():
    return FakeDaemon(routers={"r1": router_status("r1"), "r2": router_status("r2", connected=False)})


@pytest.fixture
def served(tmp_path, daemon):
    server = ControlServer(tmp_path / "run" / "control.sock", daemon, group=None)
    server.start()
    yield server
    server.stop()


def raw(path, data: bytes, timeout: float = 5.0) -> tuple[int, dict]:
    """Send bytes as they are; the status and the JSON body of the answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(data)
        reply = sock.makefile("rb")
        status = int(reply.readline().split()[1])
        headers = http.client.parse_headers(reply)
        return status, json.loads(reply.read(int(headers["Content-Length"])))


def test_every_route_answers_what_the_daemon_said(served, daemon):
    client = ControlClient(served.path)
    assert client.get("/v1/status") == daemon.status(None)
    assert client.get("/v1/status", router="r2")["routers"] == [daemon.routers["r2"]]
    assert [p["router"] for p in client.get("/v1/policies")] == ["r1", "r2"]
    assert [p["router"] for p in client.get("/v1/policies", router="r1")] == ["r1"]
    found = client.get("/v1/lookup", router="r1", address="2001:DB8:0:0::1")
    assert found["switch"]["group"] == 7 and found["address"] == "2001:db8::1"
    page = client.get("/v1/routes", router="r1", prefix="10.9.1.1/16", limit=20, after="10.0.0.0/8")
    assert page["routes"][0]["fib_target"] == "group" and page["prefix"] == "10.9.0.0/16"
    assert client.get("/v1/routes", router="r2")["routes"]
    assert client.post("/v1/bird/reload") == {"results": [{"router": r, "reloaded": True, "message": "Reconfigured"}
                                                          for r in ("r1", "r2")]}
    assert client.post("/v1/bird/reload", {"router": "r2"})["results"][0]["router"] == "r2"
    assert client.post("/v1/reload")["changes"] == ["router r1: port 3 (r1-p3) added"]
    assert client.post("/v1/reload", {"router": "r2"})["applied"] is True
    assert client.post("/v1/policies/changed", {"router": "r1", "names": ["web", "ssh.v2"]}) == {
        "router": "r1", "names": ["web", "ssh.v2"], "accepted": True, "applied": True, "error": None}
    assert client.post("/v1/policies/changed", {"router": "r1", "names": None})["names"] is None
    client.post("/v1/policies/changed", {"router": "r1", "names": ["web"], "generations": [41, 42]})
    # The daemon was asked with the checked, typed arguments (the address as Python writes it).
    served_calls = [c for c in daemon.calls if c != ("status", None) or daemon.calls.count(c) > 1]
    assert ("lookup", "r1", "2001:db8::1") in served_calls
    assert ("routes", "r1", "10.9.0.0/16", 20, "10.0.0.0/8") in daemon.calls  # host bits dropped, limit an int
    assert ("routes", "r2", None, None, None) in daemon.calls
    assert ("reload_bird", None) in daemon.calls and ("reload_bird", "r2") in daemon.calls
    assert ("reload", None) in daemon.calls and ("reload", "r2") in daemon.calls
    assert ("policies_changed", "r1", ["web", "ssh.v2"]) in daemon.calls
    assert ("policies_changed", "r1", None) in daemon.calls
    assert ("policies_changed", "r1", ["web"], (41, 42)) in daemon.calls


BAD = [
    ("GET", "/v1/lookup?router=r1", None, "address: required"),
    ("GET", "/v1/lookup?address=10.0.0.1", None, "router: required"),
    ("GET", "/v1/lookup?router=r1&address=10.0.0.300", None, "is not an IPv4 or IPv6 address"),
    ("GET", "/v1/status?router=..%2Fetc", None, "is not a router name"),
    ("GET", "/v1/routes?prefix=10.0.0.0/8", None, "router: required"),
    ("GET", "/v1/routes?router=r1&prefix=10.0.0.0/33", None, "prefix: '10.0.0.0/33' is not an IPv4 or IPv6 prefix"),
    ("GET", "/v1/routes?router=r1&limit=0", None, "limit: '0' is not a whole number from 1 to 1000"),
    ("GET", "/v1/routes?router=r1&limit=1001", None, "limit: '1001'"),
    ("GET", "/v1/routes?router=r1&after=nonsense", None, "after: 'nonsense' is not"),
    ("GET", "/v1/status?rooter=r1", None, "unknown parameter 'rooter'"),
    ("GET", "/v1/status?router=r1&router=r2", None, "router: given more than once"),
    ("GET", "/v1/status?router", None, "unreadable query"),
    ("POST", "/v1/bird/reload", b"{not json", "the body is not JSON"),
    ("POST", "/v1/bird/reload", b"[1, 2]", "must be a JSON object"),
    ("POST", "/v1/bird/reload", b'{"router": "r1", "force": true}', "unknown key 'force'"),
    ("POST", "/v1/bird/reload", b'{"router": 7}', "is not a router name"),
    ("POST", "/v1/policies/changed", b'{"names": ["web"]}', "router: required"),
    ("POST", "/v1/policies/changed", b'{"router": "r1", "names": "web"}', "names: a list of policy names"),
    ("POST", "/v1/policies/changed", b'{"router": "r1", "names": ["a b"]}', "names: a list of policy names"),
    ("POST", "/v1/policies/changed", b'{"router": "r1", "generations": [42, 41]}', "generations: the store's"),
    ("POST", "/v1/policies/changed", b'{"router": "r1", "generations": [1, "2"]}', "generations: the store's"),
    ("POST", "/v1/policies/changed", b'{"router": "r1", "generations": [1, 2, 3]}', "generations: the store's"),
]


@pytest.mark.parametrize("method,path,body,message", BAD, ids=[f"{m} {p} {b}" for m, p, b, _ in BAD])
def test_bad_input_is_400_and_never_reaches_the_daemon(served, daemon, method, path, body, message):
    data = body or b""
    status, answer = raw(served.path, f"{method} {path} HTTP/1.1\r\nHost: taprouter\r\n"
                                      f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
    assert status == 400 and message in answer["error"], answer
    assert daemon.calls == []


def test_unknown_paths_routers_and_methods(served, daemon):
    client = ControlClient(served.path)
    with pytest.raises(ControlError) as missing:
        client.get("/v1/nothing")
    assert missing.value.status == 404 and "no such path" in str(missing.value)
    with pytest.raises(ControlError) as unknown:
        client.get("/v1/lookup", router="r9", address="10.0.0.1")
    assert unknown.value.status == 404 and "no router named 'r9'" in str(unknown.value)
    with pytest.raises(ControlError) as unknown_post:
        client.post("/v1/policies/changed", {"router": "r9"})
    assert unknown_post.value.status == 404
    with pytest.raises(ControlError) as method:
        client.post("/v1/status")
    assert method.value.status == 405 and "takes GET" in str(method.value)
    conn = http.client.HTTPConnection("taprouter")
    conn.sock = socket.socket(socket.AF_UNIX)
    conn.sock.connect(str(served.path))
    conn.request("GET", "/v1/bird/reload")
    response = conn.getresponse()
    assert response.status == 405 and response.getheader("Allow") == "POST"
    assert "takes POST" in json.loads(response.read())["error"]
    conn.close()


def test_a_daemon_exception_is_a_500_and_the_server_goes_on(served, daemon, caplog):
    client = ControlClient(served.path)
    daemon.fail = "lookup"
    with pytest.raises(ControlError) as failed:
        client.get("/v1/lookup", router="r1", address="10.0.0.1")
    assert failed.value.status == 500 and "RuntimeError: lookup broke" in str(failed.value)
    assert "GET /v1/lookup failed" in caplog.text
    daemon.fail = "status"  # an answer that is not JSON fails the same way
    with pytest.raises(ControlError):
        client.get("/v1/status")
    daemon.fail = None
    assert client.get("/v1/lookup", router="r1", address="10.0.0.1")["agree"] is True
    assert client.get("/v1/status")["routers"][0]["router"] == "r1"


def test_an_answer_that_is_not_json_is_a_500(served, daemon):
    daemon.routers["r1"] = {"router": "r1", "since": object()}
    with pytest.raises(ControlError) as failed:
        ControlClient(served.path).get("/v1/status", router="r1")
    assert failed.value.status == 500 and "not JSON serializable" in str(failed.value)


def test_bodies_are_bounded(served, daemon):
    status, answer = raw(served.path, b"POST /v1/bird/reload HTTP/1.1\r\nHost: t\r\n"
                                      b"Content-Length: %d\r\n\r\n{" % (MAX_BODY + 1))
    assert status == 413 and str(MAX_BODY) in answer["error"]
    status, answer = raw(served.path, b"POST /v1/bird/reload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
                                      b"\r\n2\r\n{}\r\n0\r\n\r\n")
    assert status == 411
    padded = b'{"router": "r1"}' + b" " * (MAX_BODY - 16)  # exactly the limit is fine
    status, answer = raw(served.path, b"POST /v1/bird/reload HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%s"
                                      % (len(padded), padded))
    assert status == 200 and answer["results"][0]["router"] == "r1"
    assert daemon.calls == [("reload_bird", "r1")]


def test_headers_are_bounded(served):
    headers = b"".join(b"X-H%d: x\r\n" % i for i in range(101))
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(str(served.path))
        sock.sendall(b"GET /v1/status HTTP/1.1\r\nHost: t\r\n" + headers + b"\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 431")


def test_a_slow_client_blocks_no_one_and_is_dropped(tmp_path, daemon, monkeypatch):
    monkeypatch.setattr(server_mod._Handler, "timeout", 2.0)
    server = ControlServer(tmp_path / "control.sock", daemon, group=None)
    server.start()
    try:
        with socket.socket(socket.AF_UNIX) as slow:
            slow.connect(str(server.path))
            slow.sendall(b"GET /v1/sta")  # and nothing more
            started = time.monotonic()
            assert ControlClient(server.path).get("/v1/status", router="r1")["routers"][0]["router"] == "r1"
            assert time.monotonic() - started < 1.5  # not after the slow one's 2 s
            slow.settimeout(10)
            assert slow.recv(100) == b""  # closed by the server after its timeout
            assert 1.5 < time.monotonic() - started < 8
    finally:
        server.stop()


def test_connections_past_the_limit_are_turned_away(tmp_path, daemon, monkeypatch):
    monkeypatch.setattr(server_mod, "MAX_CLIENTS", 2)
    server = ControlServer(tmp_path / "control.sock", daemon, group=None)
    server.start()
    idle = [socket.socket(socket.AF_UNIX) for _ in range(2)]
    try:
        for sock in idle:
            sock.connect(str(server.path))
        with socket.socket(socket.AF_UNIX) as third:  # answered at once, before it sends a byte
            third.settimeout(5)
            third.connect(str(server.path))
            reply = third.makefile("rb").read()
        assert reply.startswith(b"HTTP/1.1 503 ") and b"too many connections" in reply
        for sock in idle:
            sock.close()
        deadline = time.monotonic() + 5  # room again once their threads have seen them go
        while time.monotonic() < deadline:
            try:
                assert ControlClient(server.path).get("/v1/status")["routers"]
                break
            except ControlError as exc:
                assert exc.status == 503
                time.sleep(0.05)
            except ControlUnavailable:  # turned away before its request was written: a broken pipe
                time.sleep(0.05)
        else:
            raise AssertionError("still turned away after the idle connections closed")
    finally:
        for sock in idle:
            sock.close()
        server.stop()


def test_keep_alive_serves_several_requests_on_one_connection(served):
    conn = http.client.HTTPConnection("taprouter")
    conn.sock = socket.socket(socket.AF_UNIX)
    conn.sock.connect(str(served.path))
    for router in ("r1", "r2", "r1"):
        conn.request("GET", f"/v1/status?router={router}")
        response = conn.getresponse()
        assert response.status == 200 and json.loads(response.read())["routers"][0]["router"] == router
    conn.close()


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_speaks_to_it(served, daemon):
    def curl(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["curl", "-sS", "--unix-socket", str(served.path), *args], capture_output=True,
                              text=True, timeout=10)

    assert json.loads(curl("http://taprouter/v1/status?router=r1").stdout) == daemon.status("r1")
    out = curl("-X", "POST", "-d", '{"router": "r1", "names": ["web"]}', "http://taprouter/v1/policies/changed")
    assert json.loads(out.stdout) == {"router": "r1", "names": ["web"], "accepted": True, "applied": True, "error": None}
    out = curl("-X", "POST", "http://taprouter/v1/bird/reload", "-w", "\n%{http_code}")
    assert out.stdout.splitlines()[-1] == "200"
    out = curl("http://taprouter/v1/lookup?router=r1&address=nope", "-w", "\n%{http_code}")
    assert out.stdout.splitlines()[-1] == "400" and "not an IPv4 or IPv6" in out.stdout


def test_the_socket_file_is_private_without_the_group_and_removed_on_stop(tmp_path, daemon):
    server = ControlServer(tmp_path / "control.sock", daemon, group="no-such-group-for-taprouter-tests")
    server.start()
    mode = server.path.stat().st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600 and server.gid is None
    assert [p.name for p in tmp_path.iterdir()] == ["control.sock"]  # no staging name left behind
    server.stop()
    assert not server.path.exists()
    server.stop()  # twice is harmless


def test_a_stale_socket_is_replaced_and_a_live_one_or_a_file_refused(tmp_path, daemon):
    path = tmp_path / "control.sock"
    with socket.socket(socket.AF_UNIX) as dead:  # bound, never listening: what a killed daemon leaves
        dead.bind(str(path))
    first = ControlServer(path, daemon, group=None)
    first.start()
    try:
        assert ControlClient(path).get("/v1/status")["routers"]
        with pytest.raises(ControlSocketError, match="another daemon answers"):
            ControlServer(path, daemon, group=None).start()
    finally:
        first.stop()
    path.write_text("not a socket")
    with pytest.raises(ControlSocketError, match="is not a socket"):
        ControlServer(path, daemon, group=None).start()
    assert path.read_text() == "not a socket"


def test_stop_leaves_a_successors_socket_alone(tmp_path, daemon):
    path = tmp_path / "control.sock"
    old = ControlServer(path, daemon, group=None)
    old.start()
    path.unlink()  # a new daemon took the path over
    new = ControlServer(path, daemon, group=None)
    new.start()
    old.stop()
    assert ControlClient(path).get("/v1/status")["routers"]
    new.stop()
    assert not path.exists()
