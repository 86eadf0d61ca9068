"""A config file pointing at a test database, and a store opened on it."""

from __future__ import annotations

from pathlib import Path

from taprouter import config

CONFIG = """\
database: {url}
control: {{socket: {socket}}}
metrics: {{listen: null}}
routers:
  r1:
    dpid: 1
    ports:
      1: {{tap: r1-p1, addresses: [10.0.1.1/24, "2001:db8:1::1/64"]}}
      2: {{tap: r1-p2, addresses: [10.0.2.1/24]}}
  r2:
    dpid: 2
    ports:
      1: {{tap: r2-p1, addresses: [10.1.1.1/24]}}
"""


def write_config(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "taprouter.yaml"
    path.write_text(CONFIG.format(url=url, socket=tmp_path / "control.sock"))
    return path


def open_store(tmp_path: Path, url: str, user: str = "tester"):
    from taprouter.policy.store import Store

    return Store.open(config.load(write_config(tmp_path, url)), user=user)
