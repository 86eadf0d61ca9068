"""Keeps the logs of the TAP holder and BIRD bounded: they write to files in the run directory
(tmpfs under /run), through descriptors the daemon cannot reopen for them, for as long as they live.

The rotation is logrotate's copytruncate: copy the file to NAME.1, then truncate NAME in place.
Both writers opened their file with O_APPEND, so their next write lands at the new end (offset 0),
leaving no hole. At most MAX_BYTES plus what is written between two checks stays in NAME, and one
older copy in NAME.1. A line written between the copy and the truncation is lost; that is the price
of not restarting BIRD or the holder to rotate.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

LOG = logging.getLogger(__name__)
MAX_BYTES = 1 << 20


def rotated(path: Path) -> Path:
    return path.with_name(path.name + ".1")


def cap(path: Path, max_bytes: int = MAX_BYTES) -> bool:
    """Rotate `path` when it is larger than max_bytes; True if it did."""
    try:
        if path.stat().st_size <= max_bytes:
            return False
        shutil.copyfile(path, rotated(path))
        os.truncate(path, 0)
    except FileNotFoundError:
        return False
    except OSError as exc:
        LOG.warning("cannot rotate %s: %s", path, exc)
        return False
    return True


def cap_all(paths: Iterable[Path], max_bytes: int = MAX_BYTES) -> None:
    for path in paths:
        cap(path, max_bytes)
