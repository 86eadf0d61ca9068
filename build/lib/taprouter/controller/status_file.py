"""The daemon's status file, which `taprouter status` reads: written whole, replaced atomically."""

from __future__ import annotations

import json
import logging
import os
import time

from .. import paths

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

