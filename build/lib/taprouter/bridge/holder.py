"""The TAP descriptor holder: a tiny process that keeps TAP fds open across daemon restarts.

When the last descriptor of a persistent TAP closes, Linux drops its carrier
and flushes its neighbours. The holder owns a duplicate of every TAP fd, so a
daemon that exits (even by kill -9) costs nothing; the next daemon asks the
holder for the fds back. It has no other logic on purpose.

Protocol: one JSON request per connection, descriptors passed with SCM_RIGHTS.
  {"op": "put", "name": N} + 1 fd  -> {"ok": true}
  {"op": "get"}                   -> {"ok": true, "names": [...]} + fds in that order
  {"op": "drop", "name": N}       -> {"ok": true}
  {"op": "ping"}                  -> {"ok": true, "pid": P}
  {"op": "quit"}                  -> {"ok": true}, then the holder closes everything and exits
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from .. import keep

LOG = logging.getLogger(__name__)
MAX_FDS = 253  # SCM_MAX_FD
MSG_SIZE = 1 << 16


class HolderError(Exception):
    pass


def _serve(sock_path: Path) -> None:
    fds: dict[str, int] = {}
    sock_path.unlink(missing_ok=True)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(sock_path))
    os.chmod(sock_path, 0o600)
    server.listen(16)
    # Signals must not kill the holder by accident: only "quit" (or SIGKILL) ends it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    running = True
    while running:
        conn, _ = server.accept()
        with conn:
            try:
                data, got, _, _ = socket.recv_fds(conn, MSG_SIZE, 1)
                request = json.loads(data)
                op = request.get("op")
                if op == "put":
                    old = fds.pop(request["name"], None)
                    if old is not None:
                        os.close(old)
                    fds[request["name"]] = got[0]
                    got = []
                    conn.sendall(b'{"ok": true}')
                elif op == "get":
                    names = sorted(fds)
                    socket.send_fds(conn, [json.dumps({"ok": True, "names": names}).encode()],
                                    [fds[n] for n in names])
                elif op == "drop":
                    old = fds.pop(request["name"], None)
                    if old is not None:
                        os.close(old)
                    conn.sendall(b'{"ok": true}')
                elif op == "ping":
                    conn.sendall(json.dumps({"ok": True, "pid": os.getpid()}).encode())
                elif op == "quit":
                    conn.sendall(b'{"ok": true}')
                    running = False
                else:
                    conn.sendall(json.dumps({"ok": False, "error": f"unknown op {op!r}"}).encode())
            except (OSError, ValueError, KeyError, IndexError) as exc:
                try:
                    conn.sendall(json.dumps({"ok": False, "error": str(exc)}).encode())
                except OSError:
                    pass
            for fd in got:
                os.close(fd)
    for fd in fds.values():
        os.close(fd)
    sock_path.unlink(missing_ok=True)


class HolderClient:
    """The daemon's side: talks to (and if needed starts) one router's holder."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.sock_path = run_dir / "holder.sock"
        self.pid_path = run_dir / "holder.pid"
        self.log_path = run_dir / "holder.log"

    def _request(self, request: dict, fds: list[int] = (), timeout: float = 5.0):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout)
            try:
                conn.connect(str(self.sock_path))
                socket.send_fds(conn, [json.dumps(request).encode()], list(fds))
                conn.shutdown(socket.SHUT_WR)
                data, got, _, _ = socket.recv_fds(conn, MSG_SIZE, MAX_FDS)
            except OSError as exc:
                raise HolderError(f"TAP holder at {self.sock_path}: {exc}") from None
        try:
            reply = json.loads(data)
        except ValueError:
            for fd in got:
                os.close(fd)
            raise HolderError(f"TAP holder at {self.sock_path} sent a bad reply {data!r}") from None
        if not reply.get("ok"):
            for fd in got:
                os.close(fd)
            raise HolderError(f"TAP holder refused {request.get('op')}: {reply.get('error')}")
        return reply, got

    def alive(self) -> int | None:
        """The holder's pid if it answers, else None."""
        if not self.sock_path.exists():
            return None
        try:
            reply, _ = self._request({"op": "ping"}, timeout=1.0)
        except HolderError:
            return None
        return reply["pid"]

    def start(self) -> int:
        """Start the holder unless one answers already; returns its pid."""
        pid = self.alive()
        if pid:
            return pid
        self.run_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        # A new session (Ctrl-C or SIGTERM to the daemon's process group must not reach it), and
        # outside the daemon's cgroup (a service restart must not kill it).
        proc = keep.spawn([sys.executable, "-m", "taprouter.bridge.holder", str(self.sock_path)],
                          f"taprouter TAP holder of {self.run_dir.name}",
                          stdin=subprocess.DEVNULL, stdout=log, stderr=log, close_fds=True)
        log.close()
        self.pid_path.write_text(f"{proc.pid}\n")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if self.alive():
                return proc.pid
            if proc.poll() is not None:
                raise HolderError(f"TAP holder exited with {proc.returncode}; see {self.log_path}")
            time.sleep(0.02)
        raise HolderError("TAP holder did not start within 5 s")

    def put(self, name: str, fd: int) -> None:
        self._request({"op": "put", "name": name}, [fd])

    def get(self) -> dict[str, int]:
        reply, fds = self._request({"op": "get"})
        return dict(zip(reply["names"], fds))

    def drop(self, name: str) -> None:
        self._request({"op": "drop", "name": name})

    def quit(self) -> bool:
        """Ask the holder to close everything and exit; True if one was running."""
        pid = self.alive()
        if not pid:
            return False
        self._request({"op": "quit"})
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and pid_alive(pid):
            time.sleep(0.02)
        self.pid_path.unlink(missing_ok=True)
        return True


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); treat it as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


if __name__ == "__main__":
    _serve(Path(sys.argv[1]))
