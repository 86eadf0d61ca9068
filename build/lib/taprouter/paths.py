"""Where the daemon and its routers keep their runtime files (control socket, holder, status, BIRD)."""

from __future__ import annotations

import os
import re
from pathlib import Path

# A name that becomes a path component (/run/taprouter/ROUTER, /run/netns/NETNS) or an argument
# to `ip`: never "." or "..", no "/", no leading "-" (an option to `ip`) or "." (a hidden file).
PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")
NAME_MAX = 64


def is_plain(name: object, max_length: int = NAME_MAX) -> bool:
    return (isinstance(name, str) and 0 < len(name) <= max_length
            and PLAIN_NAME.fullmatch(name) is not None)


CONFIG_ENV = "TAPROUTER_CONFIG"
DEFAULT_CONFIG = "/etc/taprouter/taprouter.yaml"


def default_config() -> str:
    """The config file when the command line names none: $TAPROUTER_CONFIG, else the packaged path."""
    return os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG


def run_root() -> Path:
    return Path(os.environ.get("TAPROUTER_RUN_DIR", "/run/taprouter"))


def control_socket() -> Path:
    """The daemon's control socket when the config names none."""
    return run_root() / "control.sock"


def router_dir(router: str) -> Path:
    """The router's own directory under the run root. The config refuses names that are not
    plain; refusing them here as well keeps a bad name from ever reaching a path."""
    if not is_plain(router):
        shown = router[:40] + "…" if isinstance(router, str) and len(router) > 40 else router
        raise ValueError(f"router name {shown!r} is not a plain name; it cannot name a directory")
    return run_root() / router
