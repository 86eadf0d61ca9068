"""`taprouter status`: the daemon's answer over the control socket, or the host's view without one; exit codes."""

from __future__ import annotations

import json
import os
import socket
import uuid
from pathlib import Path

import pytest

from fakedaemon import FakeDaemon, router_status
from taprouter import cli
from taprouter.control.server import ControlServer

NETNS = f"trst{uuid.uuid4().hex[:8]}"  # a netns no one has: the host's view finds nothing there


@pytest.fixture
def config(tmp_path, monkeypatch):
    monkeypatch.setenv("TAPROUTER_RUN_DIR", str(tmp_path / "run"))
    (tmp_path / "r1.conf").write_text("router id 10.0.1.1;\n")
    path = tmp_path / "taprouter.yaml"
    path.write_text(f"""routers:
  r1:
    dpid: 1
    netns: {NETNS}a
    ports: {{1: {{tap: r1-p1, addresses: [10.0.1.1/24]}}, 2: {{tap: r1-p2, addresses: [10.0.2.1/24]}}}}
    bird: {{config: r1.conf}}
  r2:
    dpid: 2
    netns: {NETNS}b
    ports: {{1: {{tap: r2-p1}}}}
""")
    return path


@pytest.fixture
def daemon():
    return FakeDaemon(routers={"r1": router_status("r1"), "r2": router_status("r2", bird=None)})


@pytest.fixture
def served(tmp_path, daemon, config):
    server = ControlServer(tmp_path / "run" / "control.sock", daemon, group=None)
    server.start()
    yield server
    server.stop()


def status(capsys, config, *args: str) -> tuple[int, str, str]:
    try:
        code = cli.main(["status", "-c", str(config), *args])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def test_the_daemons_answer_as_text(served, config, capsys):
    code, out, _ = status(capsys, config)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("router r1 (dpid 0x1, netns r1): switch connected since ")
    assert lines[0].endswith(" from 127.0.0.1:40001 over TCP (3 reconnects), 57 flows and 4 groups installed")
    assert lines[1] == "  TAP holder: pid 4242"
    assert lines[2] == ("  port 1: r1-p1 02:00:00:00:00:01 UP, carrier 10.0.1.1/24 (rx 10 tx 20 packets, "
                        "1 dropped)")
    assert lines[4] == "  BIRD: pid 777 (/etc/taprouter/r1.conf)"
    assert lines[5].split() == ["ospf1", "OSPF", "up", "since", "12:00:01", "Running,", "12", "routes", "imported"]
    assert lines[6] == "    OSPF neighbour 10.0.2.2 Full/DR on r1-p2 (10.0.2.2)"
    assert lines[7] == ("  routes: 1000 in the kernel; 1002 FIB entries on the switch (990 switched, 12 sent to "
                        "the kernel, 1 unresolved next hops)")
    assert lines[8].startswith("  last pass: ") and lines[8].endswith(
        ", 12.3 ms: 5 added, 1 modified, 2 deleted, 1 group changes")
    assert lines[9].startswith("  relay: to_tap 100, to_switch 90, ")
    assert lines[10] == "  health: OK"
    assert lines[11].startswith("router r2 (dpid 0x1, netns r2): switch connected")
    assert "BIRD" not in "\n".join(lines[11:])


def test_the_daemons_answer_as_json(served, daemon, config, capsys):
    code, out, _ = status(capsys, config, "--json")
    assert code == 0
    entries = json.loads(out)
    assert entries == [{**daemon.routers[r], "status_file": None, "healthy": True, "problems": []}
                       for r in ("r1", "r2")]


def test_one_router_and_exit_codes(served, daemon, config, capsys):
    daemon.routers["r2"] = router_status("r2", connected=False, bird=None)
    code, out, _ = status(capsys, config)
    assert code == 1
    assert "router r2 (dpid 0x1, netns r2): daemon running, switch not connected (3 reconnects)" in out
    assert out.splitlines()[-1] == "  health: switch not connected"
    code, out, _ = status(capsys, config, "--router", "r1", "--json")
    assert code == 0 and [e["router"] for e in json.loads(out)] == ["r1"]
    daemon.routers["r1"] = router_status("r1", bird="down")
    code, out, _ = status(capsys, config, "--router", "r1")
    assert code == 1 and out.splitlines()[-1] == "  health: BIRD: BIRD is not running"
    code, out, err = status(capsys, config, "--router", "r9")
    assert code == 2 and out == "" and f"no router named 'r9' in {config}" in err


def test_a_router_the_daemon_does_not_run(served, daemon, config, capsys):
    del daemon.routers["r2"]
    code, out, _ = status(capsys, config, "--json")
    assert code == 1
    r1, r2 = json.loads(out)
    assert r1["healthy"] and r2["problems"][0] == "the daemon does not run this router"
    assert r2["daemon"] is None and r2["netns"] == f"{NETNS}b"
    code, out, _ = status(capsys, config, "--router", "r2")
    assert code == 1 and out.splitlines()[0].endswith("): the daemon does not run this router")


def test_no_daemon_the_host_view(tmp_path, config, capsys):
    sock = tmp_path / "run" / "control.sock"
    code, out, _ = status(capsys, config)
    assert code == 1
    lines = out.splitlines()
    assert lines[0] == f"router r1 (dpid 0x1, netns {NETNS}a MISSING): daemon not running (no answer on {sock})"
    assert lines[1:5] == ["  TAP holder: not running", "  port 1: r1-p1 missing", "  port 2: r1-p2 missing",
                          "  BIRD: not running (" + str(tmp_path / "r1.conf") + "); BIRD is not running"]
    assert lines[5] == (f"  health: daemon not running (no answer on {sock}); switch not connected; "
                        "BIRD: BIRD is not running")
    code, out, _ = status(capsys, config, "--json")
    assert code == 1
    r1, r2 = json.loads(out)
    assert r1["daemon"] is None and r1["switch"] is None and r1["holder_pid"] is None
    assert r1["netns_present"] is False and not any(p["present"] for p in r1["ports"])
    assert r1["bird"]["pid"] is None and r2["bird"] is None
    assert r2["problems"] == [f"daemon not running (no answer on {sock})", "switch not connected"]


def test_a_stale_socket_says_why(tmp_path, config, capsys):
    sock = tmp_path / "run" / "control.sock"
    sock.parent.mkdir(parents=True)
    with socket.socket(socket.AF_UNIX) as dead:
        dead.bind(str(sock))
    code, out, _ = status(capsys, config, "--router", "r2")
    assert code == 1
    assert f"daemon not running (no answer on {sock}: no daemon answers on {sock} (Connection refused))" in out


def test_a_daemon_that_answers_only_in_its_status_file(tmp_path, config, capsys):
    """A daemon without the control socket still writes its status file: say so, and show it."""
    router_dir = tmp_path / "run" / "r2"
    router_dir.mkdir(parents=True)
    (router_dir / "status.json").write_text(json.dumps({
        "router": "r2", "pid": os.getpid(), "time": 0, "switch_connected": True, "switch_address": "10.1.1.1:6653",
        "switch_transport": "tls", "flows_installed": 10, "groups_installed": 2, "relay": {"to_tap": 5}}))
    sock = tmp_path / "run" / "control.sock"
    code, out, _ = status(capsys, config, "--router", "r2")
    assert code == 1
    assert out.splitlines()[0] == (f"router r2 (dpid 0x2, netns {NETNS}b MISSING): daemon pid {os.getpid()} does not "
                                   f"answer on {sock}; its status file says: switch connected from 10.1.1.1:6653 "
                                   "over TLS, 10 flows and 2 groups installed")
    assert "  relay: to_tap 5" in out.splitlines()
    code, out, _ = status(capsys, config, "--router", "r2", "--json")
    (entry,) = json.loads(out)
    assert entry["daemon"] == {"pid": os.getpid(), "started": None, "source": "status file"}
    assert entry["status_file"]["switch_transport"] == "tls"
    assert entry["problems"][0] == f"daemon pid {os.getpid()} does not answer on {sock}"


def test_a_daemon_error_is_not_an_answer(served, daemon, config, capsys):
    daemon.fail = "status"
    code, out, _ = status(capsys, config, "--router", "r2")
    assert code == 1
    assert (f"the daemon on {served.path} answered HTTP 500: the daemon failed to answer: RuntimeError: status broke"
            in out.splitlines()[0])


def test_a_bad_config_is_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("routers: {r1: {dpid: nope}}\n")
    code, out, err = status(capsys, bad)
    assert code == 2 and out == "" and "error:" in err


def test_a_socket_we_may_not_use_is_not_a_daemon_that_is_not_running(tmp_path, config, capsys, monkeypatch):
    sock = tmp_path / "run" / "control.sock"
    sock.parent.mkdir(parents=True)
    sock.touch()
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != sock)  # root may use anything
    code, out, _ = status(capsys, config, "--router", "r2")
    assert code == 1
    assert out.splitlines()[0].endswith(f"): cannot ask the daemon: {sock}: permission denied (root and the "
                                        "taprouter group may)")
