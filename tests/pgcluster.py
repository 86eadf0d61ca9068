"""A throwaway PostgreSQL server for tests: initdb in a temporary directory, a Unix socket there, no TCP.

PostgreSQL refuses to run as root, so as root the cluster belongs to the `postgres` system user
(Debian's package makes it) and its commands run through `runuser`. Durability is switched off: the
cluster lives for one test session. `stop` ends the server this started (pg_ctl, by its data
directory; then its postmaster's PID) and removes the directory; it is safe to call twice.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

USER = "taprouter"  # the cluster's superuser: trust authentication on its own socket only
SERVER_SETTINGS = ("listen_addresses=''", "fsync=off", "synchronous_commit=off", "full_page_writes=off",
                   "max_connections=40", "shared_buffers=16MB")


class ClusterUnavailable(Exception):
    """No PostgreSQL binaries on this machine, or the cluster would not start."""


def binaries() -> Path:
    """The directory of initdb and pg_ctl: Debian keeps them under /usr/lib/postgresql/VERSION/bin."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise ClusterUnavailable("initdb not found: install Debian's postgresql package (make bootstrap does)")


class Cluster:
    def __init__(self) -> None:
        self.bin = binaries()
        # As root the server runs as postgres, which must reach the directory: /tmp, not a TMPDIR
        # that may sit in root's home. Short, too: the socket's path must fit in 107 bytes.
        self.dir = Path(tempfile.mkdtemp(prefix="taprouter-pg-", dir="/tmp" if os.geteuid() == 0 else None))
        self.data = self.dir / "data"
        self.socket_dir = self.dir
        self._owner: str | None = None
        self._started = False

    def url(self, database: str) -> str:
        return f"postgresql://{USER}@/{database}?host={self.socket_dir}"

    def start(self) -> "Cluster":
        try:
            if os.geteuid() == 0:
                self._owner = "postgres"
                entry = pwd.getpwnam(self._owner)
                os.chown(self.dir, entry.pw_uid, entry.pw_gid)
            os.chmod(self.dir, 0o700)
            self._run("initdb", "-D", str(self.data), "-U", USER, "--auth=trust", "--no-sync", "-E", "UTF8",
                      "--locale=C")
            self._pg_ctl_start()
            self._started = True
        except (subprocess.CalledProcessError, OSError, KeyError) as exc:
            log = self.log()
            self.stop()
            detail = getattr(exc, "stderr", "") or ""
            raise ClusterUnavailable(f"PostgreSQL did not start: {exc}\n{detail}{log}") from None
        return self

    def _pg_ctl_start(self) -> None:
        options = " ".join(f"-c {s}" for s in SERVER_SETTINGS) + f" -k {self.socket_dir}"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.dir / "server.log"), "-o", options,
                  "-w", "-t", "30", "start")

    def pause(self) -> None:
        """Stop the server, keeping its data (a server going away under its clients: every session
        ends); `resume` starts it again."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "20", "stop")

    def resume(self) -> None:
        self._pg_ctl_start()

    def log(self) -> str:
        try:
            return (self.dir / "server.log").read_text()[-2000:]
        except OSError:
            return ""

    def create_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(host=str(self.socket_dir), dbname="postgres", user=USER, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')

    def stop(self) -> None:
        if self._started:
            self._started = False
            try:
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "-t", "20", "stop")
            except (subprocess.CalledProcessError, OSError):
                self._kill_postmaster()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _kill_postmaster(self) -> None:
        """pg_ctl failed: end the postmaster this cluster's pid file names (ours), by PID."""
        try:
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return
        try:
            os.kill(pid, signal.SIGQUIT)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bin / tool), *args]
        if self._owner is not None:
            command = ["runuser", "-u", self._owner, "--", *command]
        subprocess.run(command, check=True, capture_output=True, text=True, timeout=60, cwd=self.dir)
