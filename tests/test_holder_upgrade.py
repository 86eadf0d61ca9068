"""Upgrades: a TAP holder left running by the previous taprouter (protocol 1, tests/holder_v1.py,
the file as commit 36ab1ed shipped it) meets this daemon's HolderClient. Its descriptors move to a
new holder and are never closed in between.

The descriptors here are the write ends of pipes: the read end sees end-of-file the moment the last
write end anywhere closes, and a pipe cannot be reopened, so "no EOF, and a write through the new
holder's copy arrives" proves that some process held the descriptor at every moment.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from taprouter.bridge import holder
from taprouter.bridge.holder import HolderClient, pid_alive

OLD = Path(__file__).resolve().parent / "holder_v1.py"


@pytest.fixture
def run_dir(tmp_path_factory):
    # Short: a Unix socket path must fit in 108 bytes.
    path = Path(tmp_path_factory.mktemp("h"))
    started: list[int] = []
    yield path, started
    for pid in started:
        if pid_alive(pid):
            os.kill(pid, 9)


def start_old(run_dir: Path, started: list[int]) -> subprocess.Popen:
    sock = run_dir / "holder.sock"
    proc = subprocess.Popen([sys.executable, str(OLD), str(sock)], start_new_session=True)
    started.append(proc.pid)
    (run_dir / "holder.pid").write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + 5
    while not sock.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return proc


def open_at_eof(read_fd: int) -> bool:
    ready, _, _ = select.select([read_fd], [], [], 0)
    return bool(ready) and os.read(read_fd, 1) == b""


def test_an_old_holder_still_answers_the_new_client(run_dir):
    path, started = run_dir
    old = start_old(path, started)
    client = HolderClient(path)
    assert client.ping() == (old.pid, 1)
    r, w = os.pipe()
    client.put("t1", w)
    os.close(w)
    got = client.get()
    assert set(got) == {"t1"}
    os.close(got["t1"])
    client.drop("t1")
    assert open_at_eof(r)  # drop closed the only write end: the pipe shows it at once
    os.close(r)


def test_old_holder_hands_its_descriptors_to_a_new_one(run_dir):
    path, started = run_dir
    old = start_old(path, started)
    client = HolderClient(path)
    pipes = {}
    for name in ("r1-p1", "r1-p2", "r1-p3"):
        r, w = os.pipe()
        client.put(name, w)
        os.close(w)  # the old holder's copy is now the only write end
        pipes[name] = r

    new_pid = client.start()  # what the daemon does first
    started.append(new_pid)

    assert new_pid != old.pid
    assert old.wait(timeout=5) == 0, "the old holder did not quit"
    assert client.ping() == (new_pid, holder.PROTOCOL)
    assert int((path / "holder.pid").read_text()) == new_pid
    assert not (path / "holder.sock.new").exists()
    for name, r in pipes.items():
        assert not open_at_eof(r), f"{name}'s descriptor was closed during the handover"
    fds = client.get()
    assert set(fds) == set(pipes)
    for name, fd in fds.items():
        os.write(fd, name.encode())
        os.close(fd)
        assert os.read(pipes[name], 64) == name.encode()
    # A second start finds the current protocol and changes nothing.
    assert client.start() == new_pid
    assert client.quit()
    assert not (path / "holder.sock").exists(), "the new holder left the socket it took over"
    assert not (path / "holder.pid").exists()
    for r in pipes.values():
        assert open_at_eof(r)
        os.close(r)


def test_a_current_holder_is_kept(run_dir):
    path, started = run_dir
    client = HolderClient(path)
    pid = client.start()
    started.append(pid)
    assert client.ping() == (pid, holder.PROTOCOL)
    assert client.start() == pid
    assert client.quit()
