"""`taprouter down` on a real router netns with TAPs held by a holder: it removes the TAPs, the
holder, the netns and taprouter's run files, and leaves a file it did not make, and everything
outside the run root, alone."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from pathlib import Path

import yaml

from routerlab import TAPROUTER, leftovers, netns_list, pid_alive, run, unique_prefix
from taprouter.bridge import tap
from taprouter.bridge.holder import HolderClient


def snapshot(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): None if p.is_dir() else p.read_bytes() for p in sorted(root.rglob("*"))}


def test_down_removes_what_taprouter_made_and_keeps_the_rest():
    prefix = unique_prefix()
    netns, taps = f"{prefix}r", {1: f"{prefix}p1", 2: f"{prefix}p2"}
    base = Path(tempfile.mkdtemp(prefix=f"{prefix}-"))  # short: the holder's socket path is bounded
    holder_pid = None
    try:
        (base / "outside").mkdir()
        (base / "outside" / "keep.txt").write_text("beside the run root\n")
        root = base / "run"
        run_dir = root / netns
        (root / "another-router").mkdir(parents=True)
        (root / "another-router" / "status.json").write_text("{}\n")
        run("ip", "netns", "add", netns)
        holder = HolderClient(run_dir)
        holder_pid = holder.start()
        for name in taps.values():
            fd = tap.open_tap(netns, name)
            holder.put(name, fd)
            os.close(fd)
        (run_dir / "status.json").write_text("{}\n")
        (run_dir / "capture.pcap").write_bytes(b"the operator's\n")
        config = base / "taprouter.yaml"
        config.write_text(yaml.safe_dump({"routers": {netns: {
            "dpid": 1, "netns": netns, "ports": {n: {"tap": name} for n, name in taps.items()}}}}))
        before = {"outside": snapshot(base / "outside"), "another-router": snapshot(root / "another-router")}

        result = run(TAPROUTER, "down", "-c", str(config), env={**os.environ, "TAPROUTER_RUN_DIR": str(root)})

        lines = result.stdout.splitlines()
        assert lines[0] == (f"router {netns}: removed TAP holder of {netns}, TAP {taps[1]}, TAP {taps[2]}, "
                            f"netns {netns}, run files in {run_dir}"), result.stdout
        assert lines[1:] == [f"router {netns}: run directory {run_dir} left in place: it holds files "
                             "taprouter did not make (capture.pcap)"], result.stdout
        assert netns not in netns_list()
        assert not pid_alive(holder_pid)
        assert sorted(p.name for p in run_dir.iterdir()) == ["capture.pcap"]
        assert {"outside": snapshot(base / "outside"),
                "another-router": snapshot(root / "another-router")} == before
    finally:
        if netns in netns_list():
            run("ip", "netns", "del", netns, check=False)
        if holder_pid is not None and pid_alive(holder_pid):
            os.kill(holder_pid, signal.SIGKILL)  # the holder this test started
        shutil.rmtree(base, ignore_errors=True)
    assert not leftovers(prefix), leftovers(prefix)
