"""The daemon's status file, which `taprouter status` reads: written whole, replaced atomically."""

from __future__ import annotations

import json
import logging
import os
import time

from .. import paths
from .tls import peer

LOG = logging.getLogger(__name__)


def write(router: str, status: dict) -> None:
    path = paths.router_dir(router) / "status.json"
    data = {"router": router, "pid": os.getpid(), "time": time.time(), **status}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        tmp.replace(path)
    except OSError as exc:
        LOG.debug("cannot write %s: %s", path, exc)


def of_switch(sw, relay: dict) -> dict:
    """The status of one router's switch (switchstate.SwitchState), as the file holds it."""
    dp = sw.datapath
    return {
        "switch_connected": dp is not None,
        # Where the switch connected from, and over what: "tls" or "tcp".
        "switch_address": peer(dp.address) if dp is not None else None,
        "switch_transport": None if dp is None else "tls" if getattr(dp.socket, "over_tls", False) else "tcp",
        "switch_ports": {n: {"mac": p.mac, "link_up": p.link_up} for n, p in sw.ports.items()},
        "flows_installed": None if sw.flows is None else len(sw.flows) + len(sw.fib.flows),
        "groups_installed": None if sw.groups is None else len(sw.fib.switch_groups),
        "offload": sw.offload,
        "last_reconcile": sw.last_reconcile, "switch_errors": sw.errors,
        "netlink_resyncs": sw.watcher.resyncs,
        "relay": relay,
    }
