"""`taprouter lab` from the command line: up to converged, exec, status, down; a bad topology
refused before anything is built; down after an `up` killed halfway."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from routerlab import TAPROUTER, leftovers, wait_until
from taprouter.labkit.build import ours
from taprouter.labkit.journal import Journal
from taprouter.labkit.plan import RUN_BASE, default_prefix

TRIANGLE = Path(__file__).resolve().parent.parent / "examples" / "labs" / "triangle"


@pytest.fixture
def topology(tmp_path):
    """A copy of the triangle example: a path (and so a prefix) of this test's own."""
    copy = tmp_path / "triangle"
    shutil.copytree(TRIANGLE, copy, ignore=shutil.ignore_patterns("test_*", "__pycache__"))
    path = copy / "triangle.yaml"
    yield path
    lab(["down", str(path)])  # whatever the test left
    assert leftovers(default_prefix(path)) == []
    assert processes_naming(RUN_BASE / default_prefix(path)) == []


def processes_naming(run_dir: Path) -> list[str]:
    """Processes whose command line names the lab's run directory (its daemons, BIRDs, holders)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(run_dir) + "/" in cmdline:
            found.append(f"{pid}: {cmdline}")
    return found


def lab(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(TAPROUTER), "lab", *args], capture_output=True, text=True, timeout=timeout)


def test_up_exec_status_and_down(topology):
    up = lab(["up", str(topology)])
    assert up.returncode == 0, up.stderr
    assert "h1" in up.stdout and "birdc -s" in up.stdout and "converged in" in up.stdout
    print(up.stdout.splitlines()[-1])  # the start-up time, for the report (not asserted)
    ping = lab(["exec", "-f", str(topology), "h1", "--", "ping", "-c", "3", "-i", "0.2", "198.51.100.1"])
    assert ping.returncode == 0 and " 0% packet loss" in ping.stdout, ping.stdout + ping.stderr
    status = lab(["status", str(topology)])
    assert status.returncode == 0 and "converged" in status.stdout, status.stdout
    again = lab(["up", str(topology)])
    assert again.returncode == 1 and "already up" in again.stderr
    prefix = default_prefix(topology)
    assert leftovers(prefix)
    down = lab(["down", str(topology)])
    assert down.returncode == 0, down.stderr
    assert leftovers(prefix) == [] and not (RUN_BASE / prefix).exists()


def test_a_bad_topology_is_refused_before_anything_is_built(topology):
    text = topology.read_text()
    topology.write_text(text.replace("[r1:3, h1]", "[r1:3, h9]"))
    (topology.parent / "isp.conf").write_text("protocol bgp { this is not BIRD; }\n")
    result = lab(["up", str(topology)])
    assert result.returncode == 2
    assert f"{topology}: links[3]: 'h9' is not a node" in result.stderr, result.stderr
    topology.write_text(text)
    result = lab(["up", str(topology)])
    assert result.returncode == 2
    assert f"{topology}: peers.isp.config: BIRD refuses" in result.stderr, result.stderr
    assert leftovers(default_prefix(topology)) == [] and not (RUN_BASE / default_prefix(topology)).exists()


def test_down_removes_what_an_up_killed_halfway_had_made(topology):
    journal = Journal(RUN_BASE / default_prefix(topology) / "state.jsonl")
    proc = subprocess.Popen([str(TAPROUTER), "lab", "up", str(topology)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        # Killed once the router daemons run and some wires are made, before the peers start.
        wait_until(lambda: any(e.kind == "veth" for e in journal.entries()), timeout=30, interval=0.01)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    entries = journal.entries()
    daemons = [(int(e.data["pid"]), e.data["marker"]) for e in entries if e.kind == "process"]
    assert daemons and all(ours(pid, marker) for pid, marker in daemons), "the daemons outlive the killed up"
    assert leftovers(default_prefix(topology))
    down = lab(["down", str(topology)])
    assert down.returncode == 0, down.stdout + down.stderr
    assert leftovers(default_prefix(topology)) == []
    time.sleep(0.2)
    assert not any(ours(pid, marker) for pid, marker in daemons)
    assert processes_naming(RUN_BASE / default_prefix(topology)) == []
