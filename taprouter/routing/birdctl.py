"""Talks to BIRD's control socket: pybird where it works, a narrow client where it does not.

pybird 1.2 against BIRD 2 gets peer status, `configure check` and
`configure` right, but its socket reader stops only on the reply codes it
knows, skips non-BGP protocols, and cannot parse table-based or
`via ... on ...` output. This module keeps pybird for what works and reads
the rest itself: one query, read until BIRD's final reply line (a code
below 1000 or from 8000 up, followed by a space), parse into typed values.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass

from pybird import PyBird

_LINE = re.compile(r"^(\d{4})([ -])(.*)$")


class BirdError(Exception):
    pass


@dataclass(frozen=True)
class Protocol:
    name: str
    proto: str
    table: str
    state: str  # BIRD's own words: up, down, start
    since: str
    info: str  # e.g. Established, Running, Active
    routes_imported: int | None = None
    routes_exported: int | None = None


@dataclass(frozen=True)
class OspfNeighbour:
    protocol: str
    router_id: str
    state: str  # e.g. Full/DR, Full/-, 2-Way/DROther
    interface: str
    address: str


def _final(code: int, sep: str) -> bool:
    return sep == " " and (code < 1000 or code >= 8000)


class BirdControl:
    def __init__(self, socket_path: str, timeout: float = 5.0):
        self.socket_path = socket_path
        self.timeout = timeout
        self.pybird = PyBird(socket_file=socket_path)

    def query(self, command: str) -> list[tuple[int, str]]:
        """Send one command; returns (code, text) per line, continuation lines keeping the last code."""
        lines: list[tuple[int, str]] = []
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(self.timeout)
                sock.connect(self.socket_path)
                buf = b""
                greeted = False
                sock.sendall(command.encode() + b"\n")
                code = 0
                while True:
                    chunk = sock.recv(65536)
                    if not chunk:
                        raise BirdError(f"BIRD closed the control socket during {command!r}")
                    buf += chunk
                    *complete, buf = buf.split(b"\n")
                    for raw in complete:
                        text = raw.decode("utf-8", "replace")
                        match = _LINE.match(text)
                        if match is None:  # a continuation line without a code: " text"
                            lines.append((code, text[1:] if text.startswith(" ") else text))
                            continue
                        code, sep, rest = int(match.group(1)), match.group(2), match.group(3)
                        if not greeted and code == 1:  # "0001 BIRD 2.0.x ready."
                            greeted = True
                            continue
                        lines.append((code, rest))
                        if _final(code, sep):
                            if code >= 8000:
                                raise BirdError(f"BIRD refused {command!r}: {rest.strip()}")
                            return lines
        except OSError as exc:
            raise BirdError(f"BIRD control socket {self.socket_path}: {exc}") from None

    def alive(self) -> bool:
        try:
            self.query("show status")
            return True
        except BirdError:
            return False

    def protocols(self) -> list[Protocol]:
        result = []
        current: dict | None = None
        for code, text in self.query("show protocols all"):
            if code == 1002:
                fields = text.split(None, 5)
                if len(fields) < 4 or fields[0] == "Name":
                    continue
                if current:
                    result.append(Protocol(**current))
                fields += [""] * (6 - len(fields))
                current = dict(name=fields[0], proto=fields[1], table=fields[2], state=fields[3],
                               since=fields[4], info=fields[5].strip())
            elif current is not None and "Routes:" in text:
                numbers = dict((k, int(v)) for v, k in re.findall(r"(\d+) (imported|exported)", text))
                current["routes_imported"] = (current.get("routes_imported") or 0) + numbers.get("imported", 0)
                current["routes_exported"] = (current.get("routes_exported") or 0) + numbers.get("exported", 0)
        if current:
            result.append(Protocol(**current))
        return result

    def bgp_neighbours(self) -> frozenset[str] | None:
        """The neighbour address of every BGP protocol, or None when one has none of its own (a
        `neighbor range`: its peers cannot be known in advance)."""
        return bgp_neighbours(self.query("show protocols all"))

    def ospf_neighbours(self) -> list[OspfNeighbour]:
        result = []
        protocol = ""
        for code, text in self.query("show ospf neighbors"):
            text = text.strip()
            if not text or text.startswith("Router ID"):
                continue
            if text.endswith(":") and " " not in text:
                protocol = text[:-1]
                continue
            fields = text.split()
            if len(fields) >= 6 and "/" in fields[2]:
                result.append(OspfNeighbour(protocol, fields[0], fields[2], fields[4], fields[5]))
        return result

    def _pybird(self, call):
        """Run one pybird call, turning its errors into BirdError with the socket named."""
        try:
            return call()
        except OSError as exc:
            raise BirdError(f"BIRD control socket {self.socket_path}: {exc.strerror or exc} "
                            "(is BIRD running?)") from None
        except (ValueError, IndexError) as exc:  # pybird's parse errors and BIRD's refusals
            raise BirdError(str(exc)) from None

    def configure(self) -> None:
        """Reload the configuration in place: sessions stay up where BIRD can keep them."""
        self._pybird(self.pybird.configure)


def bgp_neighbours(lines: list[tuple[int, str]]) -> frozenset[str] | None:
    """From `show protocols all`: each BGP protocol's "Neighbor address" (a zone `%eth0` dropped), or
    None if a BGP protocol shows a "Neighbor range" or no address."""
    found: set[str] = set()
    bgp = None  # whether the protocol being read is BGP, and if so whether its address was seen
    for code, text in lines:
        if code == 1002:
            fields = text.split()
            if bgp is False:
                return None
            bgp = False if len(fields) > 1 and fields[1] == "BGP" else None
            continue
        stripped = text.strip()
        if bgp is False and stripped.startswith("Neighbor address:"):
            found.add(stripped.split(":", 1)[1].strip().split("%")[0])
            bgp = True
        elif bgp is False and stripped.startswith("Neighbor range:"):
            return None
    if bgp is False:
        return None
    return frozenset(found)
