"""Logging for a terminal or a service: level, text or JSON lines, and no timestamps under the journal."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping

TEXT_STAMPED = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
TEXT_BARE = "%(levelname)-7s %(name)s: %(message)s"  # the journal stamps each line itself


def on_journal(environ: Mapping[str, str], stderr_stat: os.stat_result | None) -> bool:
    """True when stderr is systemd's journal stream. systemd sets JOURNAL_STREAM to the stream's
    "device:inode"; a child whose stderr was redirected inherits the variable but not the stream."""
    value = environ.get("JOURNAL_STREAM", "")
    if stderr_stat is None or ":" not in value:
        return False
    device, _, inode = value.partition(":")
    try:
        return (int(device), int(inode)) == (stderr_stat.st_dev, stderr_stat.st_ino)
    except ValueError:
        return False


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (unless the journal stamps it), level, logger, message."""

    def __init__(self, stamped: bool = True):
        super().__init__()
        self.stamped = stamped

    def format(self, record: logging.LogRecord) -> str:
        entry = {"level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        if self.stamped:
            entry = {"time": round(record.created, 3), **entry}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def _stderr_stat() -> os.stat_result | None:
    try:
        return os.fstat(sys.stderr.fileno())
    except (OSError, ValueError, AttributeError):
        return None


def formatter(log_format: str, stamped: bool) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter(stamped)
    return logging.Formatter(TEXT_STAMPED if stamped else TEXT_BARE)


def configure(level: str = "info", log_format: str = "text") -> None:
    stamped = not on_journal(os.environ, _stderr_stat())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(log_format, stamped))
    handler.taprouter = True
    root = logging.getLogger()
    # Replace only a handler of ours (main() may run twice in one process, as in tests); others stay.
    for old in [h for h in root.handlers if getattr(h, "taprouter", False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))
    if level != "debug":
        # os-ken logs every connection at INFO; keep ours readable.
        logging.getLogger("os_ken").setLevel(logging.WARNING)
    # pyroute2 logs every netlink message at DEBUG, which drowns ours.
    logging.getLogger("pyroute2").setLevel(logging.INFO)
