"""A broken BIRD file: `taprouter check` names the file and line; a running router refuses to
reload it (`taprouter reload` and SIGHUP), and BIRD, its session and forwarding carry on."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest
import yaml

import birdlab
from routerlab import TAPROUTER, run

HOLD = 6
NET = "10.30.0.0/24"
PEER = birdlab.bgp_peer(port=3, asn=65003, routes=[NET], hold=HOLD, lo_addresses=["10.30.0.1/24"])
# A missing semicolon: BIRD reports it at the line after it.
BROKEN = "protocol static broken {\n  ipv4;\n  route 10.99.0.0/24 via 10.0.3.2\n}\n"
FIXED = "protocol static extra {\n  ipv4;\n  route 10.99.0.0/24 via 10.0.3.2;\n}\n"


def broken_line(text: str) -> int:
    """The line BIRD complains about in `text` (BROKEN's closing brace), 1-based."""
    lines = text.splitlines()
    return next(i for i, line in enumerate(lines, 1) if "10.99.0.0/24 via 10.0.3.2" in line) + 1


@pytest.fixture
def lab(request, tmp_path, ovs):
    yield from birdlab.bird_lab(request, tmp_path, peers=[PEER],
                                router_extra=birdlab.router_bgp(peer_port=3, peer_as=65003, hold=HOLD))


def test_check_reports_bird_syntax_error_with_file_and_line(tmp_path):
    # No lab needed: `check` reads the files only.
    bird_file = tmp_path / "broken.conf"
    bird_file.write_text("router id 10.0.1.1;\nprotocol device { scan time 10; }\n" + BROKEN)
    config = tmp_path / "taprouter.yaml"
    config.write_text(yaml.safe_dump({
        "openflow": {"listen": "127.0.0.1:6653"},
        "routers": {"r1": {"dpid": 1, "netns": "tnosuchr1",
                           "ports": {1: {"tap": "tnosuchp1", "addresses": ["10.0.1.1/24"]}},
                           "bird": {"config": str(bird_file)}}}}))
    result = run(TAPROUTER, "check", "-c", str(config), check=False)
    assert result.returncode != 0, result.stdout
    line = broken_line(bird_file.read_text())
    assert f"{bird_file}:{line}:" in result.stderr, result.stderr
    assert "syntax error" in result.stderr and "routers.r1.bird.config" in result.stderr, result.stderr
    assert "tnosuchr1" not in run("ip", "netns", "list").stdout, "check must not create anything"

    # The same file, fixed, passes.
    bird_file.write_text("router id 10.0.1.1;\nprotocol device { scan time 10; }\n" + FIXED)
    result = run(TAPROUTER, "check", "-c", str(config), check=False)
    assert result.returncode == 0, result.stderr


def test_running_router_refuses_broken_reload_and_keeps_forwarding(lab):
    session = lab.wait_protocol("peer3", "Established", timeout=30)
    lab.wait_fib_group_flow(NET)
    pid = lab.bird()["pid"]
    good = lab.bird_config.read_text()

    lab.bird_config.write_text(good + BROKEN)
    line = broken_line(lab.bird_config.read_text())
    where = f"{lab.bird_config}:{line}:"

    # `taprouter reload`: non-zero, with BIRD's own message, the file and the line.
    result = lab.taprouter("reload", "-c", str(lab.config_path), check=False)
    assert result.returncode != 0, result.stdout
    assert "BIRD not reconfigured" in result.stderr and where in result.stderr, result.stderr
    assert "syntax error" in result.stderr, result.stderr

    # SIGHUP to the daemon: refused, and logged as such.
    mark = lab.log_path.stat().st_size
    os.kill(lab.proc.pid, signal.SIGHUP)
    found = lab.wait_log(r"BIRD config not reloaded, BIRD keeps its old one: (.*)", timeout=10, since=mark)
    assert where in found.group(1), found.group(0)
    assert "BIRD reconfigured" not in lab.log_text(mark)
    assert lab.daemon_alive()

    # BIRD runs on, with its old config: same pid, the session never dropped, no new protocol.
    bird = lab.bird()
    assert bird["pid"] == pid and lab.pid_alive(pid), bird
    p = lab.protocol("peer3", bird)
    assert p["info"] == "Established" and birdlab.same_instant(p["since"], session["since"]), (p, session)
    assert lab.protocol("broken", bird) is None, bird["protocols"]
    assert "Reconfigur" not in _read(lab.router_bird_log), _read(lab.router_bird_log)
    # And forwarding goes on through the switch.
    lab.assert_switched(lab.host(1), "10.30.0.1", NET)

    # The file fixed (with a new static route), both reloads work and leave the session alone.
    lab.bird_config.write_text(good + FIXED)
    result = lab.taprouter("reload", "-c", str(lab.config_path), check=False)
    assert result.returncode == 0 and "BIRD reconfigured" in result.stdout, result.stdout + result.stderr
    lab.wait_until(lambda: lab.kernel_route("10.99.0.0/24"), timeout=10, message=lab.bird_report)
    lab.wait_fib_group_flow("10.99.0.0/24")
    mark = lab.log_path.stat().st_size
    os.kill(lab.proc.pid, signal.SIGHUP)
    lab.wait_log(r"BIRD reconfigured from", timeout=10, since=mark)
    bird = lab.bird()
    assert bird["pid"] == pid, bird
    p = lab.protocol("peer3", bird)
    assert p["info"] == "Established" and birdlab.same_instant(p["since"], session["since"]), (p, session)
    assert re.search(r"Reconfigured", _read(lab.router_bird_log)), _read(lab.router_bird_log)


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""
