"""Runs BIRD 2 inside a router's netns: validate, start, supervise, re-adopt, reload, stop."""

from __future__ import annotations

import ipaddress
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from .. import keep
from . import birdlint
from .birdctl import BirdControl, BirdError

LOG = logging.getLogger("taprouter.bird")
BACKOFF_MAX = 30.0
PEERS_INTERVAL = 5.0  # seconds between looks at BIRD's BGP neighbours


class BirdConfigError(Exception):
    """BIRD refused a config file; the message carries BIRD's own words with the line."""


@dataclass(frozen=True)
class BirdPaths:
    socket: Path
    pidfile: Path
    log: Path
    accepted: Path  # a copy of the last BIRD file that passed validation

    @staticmethod
    def under(run_dir: Path) -> "BirdPaths":
        return BirdPaths(run_dir / "bird.ctl", run_dir / "bird.pid", run_dir / "bird.log",
                         run_dir / "bird.accepted.conf")


def validate(config: Path) -> None:
    """`bird -p`: parse only. Raises BirdConfigError naming the file and line."""
    try:
        proc = subprocess.run(["bird", "-p", "-c", str(config)], capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        raise BirdConfigError("bird is not installed (Debian package bird2)") from None
    if proc.returncode != 0:
        message = (proc.stderr or proc.stdout).strip().removeprefix("bird: ")
        raise BirdConfigError(message or f"bird -p exited with {proc.returncode}")


def describe(config: Path, paths: BirdPaths) -> dict:
    """BIRD as `taprouter status` shows it (control/schema.py's BirdStatus): its pid, its protocols
    and OSPF neighbours in its own words, or why it cannot be asked."""
    result: dict = {"config": str(config), "pid": running_pid(paths), "protocols": [], "ospf_neighbours": [],
                    "error": None}
    if result["pid"] is None:
        result["error"] = "BIRD is not running"
        return result
    control = BirdControl(str(paths.socket))
    try:
        result["protocols"] = [asdict(p) for p in control.protocols()]
        if any(p["proto"] == "OSPF" for p in result["protocols"]):
            result["ospf_neighbours"] = [asdict(n) for n in control.ospf_neighbours()]
    except BirdError as exc:
        result["error"] = str(exc)
    return result


def keep_accepted(config: Path, paths: BirdPaths) -> None:
    """Copy a file that just passed validation to the run dir, replacing the previous copy whole."""
    paths.accepted.parent.mkdir(parents=True, exist_ok=True)
    partial = paths.accepted.with_name(paths.accepted.name + ".new")
    shutil.copyfile(config, partial)
    os.replace(partial, paths.accepted)


IP = "ip"  # iproute2; tests put a stand-in here


def has_kernel_routes(netns: str) -> bool:
    """Whether the router's kernel holds routes a BIRD installed (`proto bird`), in any table.

    The first route answers it: `ip` is stopped there. Listing a full table to the end took 3.4
    to 3.9 s at 1M routes, all of it before a BIRD that died could start again."""
    for family in ("-4", "-6"):
        with subprocess.Popen([IP, "-n", netns, family, "route", "show", "table", "all", "proto", "bird"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as proc:
            timer = threading.Timer(30, proc.kill)  # an `ip` that hangs must not hold BIRD back for good
            timer.start()
            try:
                first = proc.stdout.readline()
            finally:
                timer.cancel()
                if proc.poll() is None:
                    proc.kill()
        if first.strip():
            return True
    return False


def running_pid(paths: BirdPaths) -> int | None:
    """The pid of a BIRD that answers on our control socket, if any."""
    try:
        pid = int(paths.pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read().split(b"\0")
    except OSError:
        return None
    if not cmdline or not cmdline[0].endswith(b"bird") or str(paths.socket).encode() not in cmdline:
        return None  # a recycled pid: not our BIRD
    return pid


def stop(paths: BirdPaths, timeout: float = 5.0) -> bool:
    """Stop our BIRD by pid (never by name); True if one was running."""
    pid = running_pid(paths)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and running_pid(paths) == pid:
        time.sleep(0.05)
    if running_pid(paths) == pid:
        os.kill(pid, signal.SIGKILL)
    paths.pidfile.unlink(missing_ok=True)
    return True


class BirdSupervisor:
    """Keeps one BIRD running for one router; a BIRD left by an earlier daemon is adopted, not restarted.

    BIRD is (re)started with the user's file when it passes validation, otherwise with the copy of
    the last file that did, so a broken edit never leaves the router without its routing protocol.
    When the kernel still holds routes of an earlier BIRD (a crash, a kill -9), BIRD starts with -R:
    protocols configured for graceful restart then keep those routes until they have converged.
    """

    def __init__(self, router: str, netns: str, config: Path, run_dir: Path,
                 on_peers: Callable[[frozenset | None], None] | None = None):
        self.router = router
        self._on_peers = on_peers  # told BIRD's BGP neighbours' addresses whenever they change
        self.peers: frozenset | None = None
        self._peers_at = 0.0
        self.netns = netns
        self.config = config
        self.paths = BirdPaths.under(run_dir)
        self.control = BirdControl(str(self.paths.socket))
        self._child: subprocess.Popen | None = None
        self._adopted = False
        self._launching = threading.Lock()  # the supervisor's thread and a reload may both start BIRD
        self._stop = threading.Event()
        self._backoff = 1.0
        self._thread = threading.Thread(target=self._run, name=f"bird-{router}", daemon=True)

    def start(self) -> None:
        pid = running_pid(self.paths)
        if pid is not None:
            self._adopted = True
            LOG.info("router %s: adopted BIRD (pid %d) still running from before", self.router, pid)
        else:
            self._launch()
        self.refresh_peers()
        self._thread.start()

    def stop_supervising(self) -> None:
        """Stop watching; BIRD itself keeps running so that sessions survive our restart."""
        self._stop.set()

    def _file_to_run(self) -> Path | None:
        """The user's file if BIRD accepts it (and it becomes the kept copy), else the kept copy."""
        try:
            validate(self.config)
        except BirdConfigError as exc:
            if self.paths.accepted.exists():
                LOG.error("router %s: BIRD's config is broken: %s; starting BIRD with the last file that "
                          "passed validation, %s", self.router, exc, self.paths.accepted)
                return self.paths.accepted
            LOG.error("router %s: not starting BIRD, its config is broken: %s", self.router, exc)
            return None
        keep_accepted(self.config, self.paths)
        for warning in birdlint.warnings(self.config.read_text(errors="replace")):
            LOG.warning("router %s: %s: %s", self.router, self.config, warning)
        return self.config

    def _launch(self) -> bool:
        with self._launching:
            if running_pid(self.paths) is not None:
                return True  # started meanwhile by the other caller
            return self._launch_locked()

    def _launch_locked(self) -> bool:
        config = self._file_to_run()
        if config is None:
            return False
        recover = has_kernel_routes(self.netns)
        self.paths.socket.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.paths.log, "ab")
        # -f: BIRD stays our child, so we learn its exit status; a new session keeps Ctrl-C and
        # our own SIGTERM away from it, and keep.spawn keeps it out of the daemon's cgroup.
        self._child = keep.spawn(
            ["ip", "netns", "exec", self.netns, "bird", "-f", *(["-R"] if recover else []), "-c", str(config),
             "-s", str(self.paths.socket), "-P", str(self.paths.pidfile)],
            f"taprouter BIRD of {self.router}", stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        self._adopted = False
        log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._child.poll() is not None:
                LOG.error("router %s: BIRD exited with %s at start; see %s", self.router, self._child.returncode,
                          self.paths.log)
                return False
            if running_pid(self.paths) is not None and self.control.alive():
                LOG.info("router %s: started BIRD (pid %d) with %s%s", self.router, running_pid(self.paths),
                         config, " in graceful restart recovery (-R): the kernel held its routes"
                         if recover else "")
                return True
            time.sleep(0.05)
        LOG.error("router %s: BIRD did not answer on its control socket within 10 s", self.router)
        return False

    def _died(self) -> str | None:
        """Why BIRD is gone, or None while it runs."""
        if self._child is not None:
            code = self._child.poll()
            if code is None:
                return None
            self._child = None
            return f"exited with status {code}" if code >= 0 else f"killed by {signal.Signals(-code).name}"
        if running_pid(self.paths) is not None:
            return None
        if self._adopted:
            self._adopted = False
            return "is no longer running (it was adopted, so its exit status is unknown)"
        return "is not running"

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            why = self._died()
            if why is None:
                self._backoff = 1.0
                if time.monotonic() - self._peers_at >= PEERS_INTERVAL:
                    self.refresh_peers()
                continue
            LOG.error("router %s: BIRD %s; restarting in %.0f s (last lines of %s follow)\n%s", self.router,
                      why, self._backoff, self.paths.log, self._log_tail())
            if self._stop.wait(self._backoff):
                return
            self._backoff = min(self._backoff * 2, BACKOFF_MAX)
            self._launch()

    def refresh_peers(self) -> None:
        """Ask BIRD for its BGP neighbours; tell on_peers if they changed. A BIRD that does not
        answer changes nothing: its restart should not churn the punt flows."""
        self._peers_at = time.monotonic()
        try:
            found = self.control.bgp_neighbours()
        except BirdError:
            return
        peers = None if found is None else frozenset(ipaddress.ip_address(a) for a in found)
        if peers != self.peers:
            LOG.info("router %s: BGP admitted from %s", self.router,
                     "any source, metered (BIRD's neighbours cannot all be known)" if peers is None
                     else ", ".join(sorted(map(str, peers))) or "no one (no BGP protocol)")
            self.peers = peers
            if self._on_peers is not None:
                self._on_peers(peers)

    def _log_tail(self, lines: int = 5) -> str:
        try:
            return "\n".join(self.paths.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def reload(self) -> str:
        """Validate, then `configure` in place; a broken file leaves BIRD on its old config. With no
        BIRD running, start it. Returns what was done."""
        validate(self.config)
        with self._launching:
            if running_pid(self.paths) is None:
                if not self._launch_locked():
                    raise BirdConfigError(f"BIRD was not running and did not start; see {self.paths.log}")
                self._backoff = 1.0
                self.refresh_peers()
                return f"started from {self.config}"
            # BIRD re-reads the file it was started with, which may be the kept copy: update it first.
            keep_accepted(self.config, self.paths)
            try:
                self.control.configure()
            except BirdError as exc:
                raise BirdConfigError(f"BIRD refused to reconfigure: {exc}") from None
        LOG.info("router %s: BIRD reconfigured from %s", self.router, self.config)
        self.refresh_peers()
        return f"reconfigured from {self.config}"
