"""What the pages read from the daemon: its control socket's answers, or why there are none."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..control.client import ControlClient, ControlError, ControlUnavailable

TIMEOUT = 3.0  # seconds: a page that polls every second must not hang on a stuck daemon


@dataclass(frozen=True)
class Answer:
    """The daemon's answer (schema.py's shapes), or None and the reason."""

    data: Any
    error: str | None = None


def ask(socket_path, path: str, **params: Any) -> Answer:
    try:
        return Answer(ControlClient(socket_path, timeout=TIMEOUT).get(path, **params))
    except ControlUnavailable as exc:
        return Answer(None, f"the daemon is not running ({exc})")
    except ControlError as exc:
        return Answer(None, f"the daemon answered {exc.status}: {exc}")


def status(socket_path) -> Answer:
    return ask(socket_path, "/v1/status")


def lookup(socket_path, router: str, address: str) -> Answer:
    return ask(socket_path, "/v1/lookup", router=router, address=address)


def routes(socket_path, router: str, prefix: str | None, after: str | None, limit: int) -> Answer:
    params = {"router": router, "limit": limit}
    if prefix:
        params["prefix"] = prefix
    if after:
        params["after"] = after
    return ask(socket_path, "/v1/routes", **params)


def reload_bird(socket_path, router: str | None) -> Answer:
    try:
        return Answer(ControlClient(socket_path, timeout=30.0).post("/v1/bird/reload", {"router": router}))
    except ControlUnavailable as exc:
        return Answer(None, f"the daemon is not running ({exc})")
    except ControlError as exc:
        return Answer(None, f"the daemon answered {exc.status}: {exc}")
