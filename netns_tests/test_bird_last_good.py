"""BIRD's loss after a refused reload: the supervisor restarts a BIRD killed with -9 from the last
file that passed validation (a copy in the run dir), `taprouter reload` with no BIRD running starts
it, and the log calls a BIRD "adopted" only when it was."""

from __future__ import annotations

import os
import signal

import pytest

import birdlab

HOLD = 6
NET = "10.30.0.0/24"
PEER = birdlab.bgp_peer(port=3, asn=65003, routes=[NET], hold=HOLD, lo_addresses=["10.30.0.1/24"])
BROKEN = "protocol static broken {\n  ipv4;\n  route 10.99.0.0/24 via 10.0.3.2\n}\n"
FIXED = "protocol static extra {\n  ipv4;\n  route 10.99.0.0/24 via 10.0.3.2;\n}\n"


@pytest.fixture
def lab(request, tmp_path, ovs):
    yield from birdlab.bird_lab(request, tmp_path, peers=[PEER],
                                router_extra=birdlab.router_bgp(peer_port=3, peer_as=65003, hold=HOLD))


def new_bird(lab, old_pid: int, timeout: float = 15) -> int:
    return lab.wait_until(lambda: (pid := lab.bird()["pid"]) and pid != old_pid and pid, timeout=timeout,
                          interval=0.2, message=lab.bird_report)


def test_bird_killed_after_refused_reload_restarts_from_last_good_file(lab):
    lab.wait_protocol("peer3", "Established", timeout=30)
    lab.wait_fib_group_flow(NET)
    good = lab.bird_config.read_text()
    accepted = lab.router_dir / "bird.accepted.conf"

    lab.bird_config.write_text(good + BROKEN)
    result = lab.taprouter("reload", "-c", str(lab.config_path), check=False)
    assert result.returncode != 0 and "BIRD not reconfigured" in result.stderr, result.stdout + result.stderr

    mark = lab.log_path.stat().st_size
    old_pid = lab.bird()["pid"]
    os.kill(old_pid, signal.SIGKILL)
    new_bird(lab, old_pid)
    lab.wait_log(r"starting BIRD with the last file that passed validation", since=mark, timeout=5)
    log = lab.log_text(mark)
    assert "not starting BIRD" not in log and "adopted" not in log, log
    # The restarted BIRD runs the old protocols, and its session and routes come back.
    lab.wait_protocol("peer3", "Established", timeout=30)
    assert lab.protocol("broken") is None
    lab.assert_switched(lab.host(1), "10.30.0.1", NET)
    assert accepted.read_text() == good, "the kept copy is the last file that passed, not the refused one"


def test_reload_with_no_bird_running_starts_it(lab):
    lab.wait_protocol("peer3", "Established", timeout=30)
    good = lab.bird_config.read_text()
    # No copy to fall back on (as on a first start with a broken file): BIRD cannot be restarted.
    lab.bird_config.write_text(good + BROKEN)
    (lab.router_dir / "bird.accepted.conf").unlink(missing_ok=True)
    mark = lab.log_path.stat().st_size
    old_pid = lab.bird()["pid"]
    os.kill(old_pid, signal.SIGKILL)
    lab.wait_log(r"not starting BIRD, its config is broken", since=mark, timeout=10)
    lab.wait_log(r"BIRD is not running; restarting", since=mark, timeout=10)
    assert "adopted" not in lab.log_text(mark), lab.log_text(mark)
    assert lab.bird()["pid"] is None

    lab.bird_config.write_text(good + FIXED)
    watch = birdlab.Stopwatch()
    result = lab.taprouter("reload", "-c", str(lab.config_path), check=False)
    took = watch()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "BIRD started from" in result.stdout, result.stdout
    assert lab.bird()["pid"] not in (None, old_pid), lab.bird_report()
    print(f"reload started BIRD in {took:.2f} s")
    lab.wait_protocol("peer3", "Established", timeout=30)
    lab.wait_until(lambda: lab.kernel_route("10.99.0.0/24"), timeout=10, message=lab.bird_report)
