"""A client of the daemon's control socket: HTTP/1.1 with JSON bodies over a Unix socket.

The same requests work with `curl --unix-socket SOCKET http://taprouter/v1/status`.
"""

from __future__ import annotations

import http.client
import json
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

TIMEOUT = 10.0  # seconds: a request is answered from memory, or after one reconcile pass


class ControlUnavailable(Exception):
    """No daemon answers on the socket (it is not running, or the socket is not ours to use)."""


class ControlError(Exception):
    """The daemon answered with an error; `status` is the HTTP status, the message its words."""

    def __init__(self, status: int, message: str):
        self.status = status
        super().__init__(message)


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float):
        super().__init__("taprouter", timeout=timeout)
        self._path = str(path)

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class ControlClient:
    def __init__(self, path: str | Path, timeout: float = TIMEOUT):
        self.path = Path(path)
        self.timeout = timeout

    def get(self, path: str, **params: Any) -> Any:
        query = {k: v for k, v in params.items() if v is not None}
        return self._request("GET", path + (f"?{urlencode(query)}" if query else ""), None)

    def post(self, path: str, body: Any = None) -> Any:
        return self._request("POST", path, {} if body is None else body)

    def _request(self, method: str, path: str, body: Any) -> Any:
        conn = _UnixConnection(self.path, self.timeout)
        try:
            data = None if body is None else json.dumps(body).encode()
            headers = {} if data is None else {"Content-Type": "application/json"}
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            raw = response.read()
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise ControlUnavailable(f"no daemon answers on {self.path} ({exc.strerror})") from None
        except PermissionError:
            raise ControlUnavailable(f"{self.path}: permission denied (root or the taprouter group "
                                     "may use it)") from None
        except (OSError, http.client.HTTPException) as exc:
            raise ControlUnavailable(f"the daemon on {self.path} did not answer: {exc}") from None
        finally:
            conn.close()
        try:
            reply = json.loads(raw) if raw else None
        except ValueError:
            raise ControlError(response.status, f"not JSON: {raw[:80]!r}") from None
        if response.status >= 400:
            message = reply.get("error") if isinstance(reply, dict) else None
            raise ControlError(response.status, message or f"HTTP {response.status}")
        return reply
