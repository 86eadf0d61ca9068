"""Removes everything a router leaves behind on purpose: TAPs, their holder, and the netns."""

from __future__ import annotations

import logging
import shutil

from . import paths
from . import netns
from .bridge import tap
from .bridge.holder import HolderClient
from .config import RouterConfig
from .routing import bird

LOG = logging.getLogger("taprouter.down")


def down(router: RouterConfig) -> list[str]:
    """Tear one router down; returns what was removed, for the user to read."""
    removed = []
    if bird.stop(bird.BirdPaths.under(paths.router_dir(router.name))):
        removed.append(f"BIRD of {router.name}")
    holder = HolderClient(paths.router_dir(router.name))
    if holder.quit():
        removed.append(f"TAP holder of {router.name}")
    for port in router.ports:
        if tap.delete(router.netns, port.tap):
            removed.append(f"TAP {port.tap}")
    if netns.exists(router.netns):
        netns.remove(router.netns)
        removed.append(f"netns {router.netns}")
    run_dir = paths.router_dir(router.name)
    if run_dir.exists():
        shutil.rmtree(run_dir, ignore_errors=True)
        removed.append(f"run directory {run_dir}")
    return removed
