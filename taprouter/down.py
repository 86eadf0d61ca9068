"""Removes everything a router leaves behind on purpose: BIRD, the TAPs, their holder, the netns
and the router's run files, and nothing else."""

from __future__ import annotations

import errno
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from . import logcap, netns, paths
from .bridge import tap
from .bridge.holder import HolderClient
from .config import RouterConfig
from .routing import bird

LOG = logging.getLogger("taprouter.down")

# controller/status_file.py writes status.json through a temporary file beside it.
STATUS_FILES = ("status.json", "status.tmp")
SHOWN_FOREIGN = 5  # foreign files named in the message; the rest are counted


@dataclass(frozen=True)
class Teardown:
    """What `down` removed, and what it left in place and why, for the user to read."""
    removed: tuple[str, ...]
    kept: tuple[str, ...]


def run_files(run_dir: Path) -> tuple[Path, ...]:
    """Every file taprouter itself writes in a router's run directory."""
    holder = HolderClient(run_dir)
    birds = bird.BirdPaths.under(run_dir)
    return (holder.sock_path, holder.pid_path, holder.log_path, birds.socket, birds.pidfile, birds.log,
            logcap.rotated(holder.log_path), logcap.rotated(birds.log),
            birds.accepted, *(run_dir / name for name in STATUS_FILES))


def down(router: RouterConfig) -> Teardown:
    """Tear one router down."""
    removed: list[str] = []
    kept: list[str] = []
    run_dir = _own_run_dir(router.name, kept)
    if run_dir is not None:
        if bird.stop(bird.BirdPaths.under(run_dir)):
            removed.append(f"BIRD of {router.name}")
        if HolderClient(run_dir).quit():
            removed.append(f"TAP holder of {router.name}")
    for port in router.taps:  # VLANs' TAPs included
        if tap.delete(router.netns, port.tap):
            removed.append(f"TAP {port.tap}")
    if netns.exists(router.netns):
        netns.remove(router.netns)
        removed.append(f"netns {router.netns}")
    if run_dir is not None:
        _remove_run_files(run_dir, removed, kept)
    return Teardown(tuple(removed), tuple(kept))


def _own_run_dir(name: str, kept: list[str]) -> Path | None:
    """The router's run directory if it is one taprouter may clean: a real directory (not a
    symlink) directly under the resolved run root. None, with the reason in `kept`, otherwise."""
    try:
        run_dir = paths.router_dir(name)
    except ValueError as exc:
        kept.append(f"no run files touched: {exc}")
        return None
    root = paths.run_root().resolve()
    if run_dir.is_symlink() or run_dir.resolve() != root / name:
        kept.append(f"run directory {run_dir} left alone: it is a symlink to {run_dir.resolve()}, "
                    f"not a directory of its own in {root}")
        return None
    return root / name


def _remove_run_files(run_dir: Path, removed: list[str], kept: list[str]) -> None:
    """Unlink the files taprouter makes, then the directory if that emptied it. Never rmtree:
    whatever else is there was put there by someone else."""
    if not run_dir.is_dir():
        return
    unlinked = 0
    for path in run_files(run_dir):
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            continue
        if stat.S_ISDIR(mode):
            continue  # taprouter never makes a directory there: not ours
        path.unlink(missing_ok=True)  # a symlink goes, not what it points to
        unlinked += 1
    try:
        run_dir.rmdir()
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
        foreign = sorted(p.name for p in run_dir.iterdir())
        more = f" and {len(foreign) - SHOWN_FOREIGN} more" if len(foreign) > SHOWN_FOREIGN else ""
        if unlinked:
            removed.append(f"run files in {run_dir}")
        kept.append(f"run directory {run_dir} left in place: it holds files taprouter did not make "
                    f"({', '.join(foreign[:SHOWN_FOREIGN])}{more})")
        return
    removed.append(f"run directory {run_dir}")
