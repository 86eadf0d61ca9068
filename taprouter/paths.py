"""Where a router keeps its runtime files (holder socket, status, BIRD control socket)."""

from __future__ import annotations

import os
from pathlib import Path


def run_root() -> Path:
    return Path(os.environ.get("TAPROUTER_RUN_DIR", "/run/taprouter"))


def router_dir(router: str) -> Path:
    return run_root() / router
