"""BIRD's and the holder's logs stay bounded while a real process keeps appending to them."""

from __future__ import annotations

import subprocess
import sys
import time

from taprouter import daemon, down, logcap
from taprouter.config import load

WRITER = """
import sys, time
with open(sys.argv[1], "ab", buffering=0) as f:  # as BIRD's and the holder's stdout/stderr
    for i in range(20000):
        f.write(b"line %06d of a chatty BIRD\\n" % i)
        if i % 200 == 0:
            time.sleep(0.001)
"""


def test_a_file_being_appended_to_stays_bounded_and_holeless(tmp_path):
    log = tmp_path / "bird.log"
    cap = 16 << 10
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(log)])
    largest, rotations = 0, 0
    try:
        while writer.poll() is None:
            rotations += logcap.cap(log, cap)
            largest = max(largest, log.stat().st_size if log.exists() else 0)
            time.sleep(0.002)
    finally:
        writer.wait(timeout=30)
    rotations += logcap.cap(log, cap)
    written = 20000 * len(b"line 000000 of a chatty BIRD\n")
    assert written > 20 * cap
    assert rotations >= 5
    assert log.stat().st_size <= cap
    # The copy is the live file as it was when it crossed the cap: the cap plus what came in
    # between two checks (2 ms apart here, more when the machine is busy), nowhere near the 35x
    # written.
    assert cap < logcap.rotated(log).stat().st_size < 12 * cap
    assert largest < 12 * cap
    data = log.read_bytes()
    assert b"\0" not in data + logcap.rotated(log).read_bytes(), "a write past the truncation: a hole"
    # The writer kept writing to the same file after every rotation: its last line is there (or,
    # when the last check rotated it, in the copy).
    assert (data or logcap.rotated(log).read_bytes()).endswith(b"line 019999 of a chatty BIRD\n")
    print(f"{written} bytes written, {rotations} rotations, live file at most {largest} bytes between checks")


def test_small_or_missing_files_are_left_alone(tmp_path):
    log = tmp_path / "holder.log"
    assert not logcap.cap(log)
    log.write_text("one line\n")
    assert not logcap.cap(log)
    assert not logcap.rotated(log).exists()


def test_the_daemon_caps_each_routers_logs_and_down_removes_the_copies(tmp_path, monkeypatch):
    monkeypatch.setenv("TAPROUTER_RUN_DIR", str(tmp_path / "run"))
    path = tmp_path / "t.yaml"
    path.write_text("routers:\n  r1:\n    dpid: 1\n    ports: {1: {tap: t1}}\n"
                    "  r2:\n    dpid: 2\n    ports: {1: {tap: t2}}\n")
    logs = daemon.log_files(load(path))
    assert {(p.parent.name, p.name) for p in logs} == {
        (r, n) for r in ("r1", "r2") for n in ("holder.log", "bird.log")}
    owned = down.run_files(tmp_path / "run" / "r1")
    assert tmp_path / "run" / "r1" / "bird.log.1" in owned
    assert tmp_path / "run" / "r1" / "holder.log.1" in owned
