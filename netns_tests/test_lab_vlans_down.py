"""`taprouter lab down` after an `up` of a lab with VLANs was killed halfway: the access switch
and its trunk, named in the journal before they were made, go with the rest."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from routerlab import TAPROUTER, leftovers, wait_until
from taprouter.labkit.journal import Journal
from taprouter.labkit.plan import RUN_BASE, default_prefix

VLANS = Path(__file__).resolve().parent.parent / "examples" / "labs" / "vlans"


@pytest.fixture
def topology(tmp_path):
    copy = tmp_path / "vlans"
    shutil.copytree(VLANS, copy, ignore=shutil.ignore_patterns("test_*", "__pycache__"))
    path = copy / "vlans.yaml"
    yield path
    subprocess.run([str(TAPROUTER), "lab", "down", str(path)], capture_output=True, timeout=120)
    assert leftovers(default_prefix(path)) == []


def test_down_removes_the_access_switch_of_an_up_killed_halfway(topology):
    prefix = default_prefix(topology)
    journal = Journal(RUN_BASE / prefix / "state.jsonl")
    proc = subprocess.Popen([str(TAPROUTER), "lab", "up", str(topology)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        # Killed once the trunk (the last wire) is in the journal: it may or may not exist yet.
        wait_until(lambda: any(e.kind == "veth" and e.name == f"{prefix}k0a" for e in journal.entries()),
                   timeout=30, interval=0.01)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    bridges = {e.name for e in journal.entries() if e.kind == "bridge"}
    assert bridges == {f"{prefix}b0", f"{prefix}a0"}
    assert f"bridge {prefix}a0" in leftovers(prefix)
    down = subprocess.run([str(TAPROUTER), "lab", "down", str(topology)], capture_output=True, text=True,
                          timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
    assert leftovers(prefix) == []
