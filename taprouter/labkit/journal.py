"""The lab's state file: one JSON line per thing, written (and flushed to disk) before the thing is
made, so that `down` removes exactly what `up` made even when `up` died halfway."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator


@dataclass(frozen=True)
class Entry:
    kind: str  # netns, bridge, veth, router (a daemon's config), process
    name: str
    data: dict[str, Any]


class Journal:
    def __init__(self, path: Path):
        self.path = path

    def record(self, kind: str, name: str, **data: Any) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"kind": kind, "name": name, **data}, sort_keys=True) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def entries(self) -> list[Entry]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return []
        result = []
        for line in text.splitlines():
            try:
                item = json.loads(line)
            except ValueError:
                continue  # a line cut short by a crash: the thing it names was never made
            result.append(Entry(item.pop("kind"), item.pop("name"), item))
        return result

    def of(self, kind: str) -> Iterator[Entry]:
        return (e for e in self.entries() if e.kind == kind)

    def exists(self) -> bool:
        return self.path.exists()
