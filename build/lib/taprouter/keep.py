"""Where the TAP holder and BIRD run: outside the daemon's cgroup, so a service manager that kills
the daemon's whole cgroup on `systemctl restart` (systemd's default) leaves them running.

Two ways, chosen by `placement` (pure) and carried out by `spawn`:
- under systemd (the daemon is a unit: INVOCATION_ID set, /run/systemd/system present), the child
  is started through `systemd-run --scope --slice=taprouter.slice`, a scope of its own;
- with $TAPROUTER_KEEP_CGROUP naming a cgroup v2 directory, the child is moved into it (for other
  supervisors, and for the tests, which have no systemd to ask).
Otherwise the child only gets a session of its own, as before: Ctrl-C and SIGTERM to the daemon's
process group do not reach it.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

LOG = logging.getLogger(__name__)
KEEP_CGROUP_ENV = "TAPROUTER_KEEP_CGROUP"
SLICE = "taprouter.slice"


@dataclass(frozen=True)
class Placement:
    prefix: tuple[str, ...] = ()  # put before the child's argv
    cgroup: Path | None = None  # a cgroup v2 directory to move the child into


def placement(environ: Mapping[str, str], systemd_booted: bool, systemd_run: str | None,
              description: str) -> Placement:
    keep = environ.get(KEEP_CGROUP_ENV)
    if keep:
        return Placement(cgroup=Path(keep))
    if systemd_booted and environ.get("INVOCATION_ID") and systemd_run:
        # A transient scope, named by systemd, in a slice of its own: not part of taprouter.service,
        # so neither its restart nor its stop kills the child. --collect: the scope goes once the
        # child exits. systemd-run --scope execs the command, so the pid we get is the child's.
        return Placement(prefix=(systemd_run, "--scope", "--quiet", "--collect", f"--slice={SLICE}",
                                 f"--description={description}", "--"))
    return Placement()


def spawn(argv: Sequence[str], description: str, **popen) -> subprocess.Popen:
    """Popen(argv) in a new session, placed outside the daemon's cgroup where that is asked for."""
    where = placement(os.environ, os.path.isdir("/run/systemd/system"), shutil.which("systemd-run"),
                      description)
    proc = subprocess.Popen([*where.prefix, *argv], start_new_session=True, **popen)
    if where.cgroup is not None:
        try:
            where.cgroup.mkdir(parents=True, exist_ok=True)
            # The child may have run a few instructions in our cgroup; it has not forked yet.
            (where.cgroup / "cgroup.procs").write_text(f"{proc.pid}\n")
        except OSError as exc:
            LOG.warning("%s (pid %d) stays in the daemon's cgroup: cannot move it to %s: %s",
                        description, proc.pid, where.cgroup, exc)
    return proc
