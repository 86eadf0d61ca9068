"""The `ha:` block: its defaults, its checks, and HA refused without PostgreSQL."""

from __future__ import annotations

import pytest

from taprouter import config
from taprouter.config import ConfigError, HaConfig

PG = "postgresql://taprouter@/taprouter?host=/run/postgresql"


def data(**top) -> dict:
    return {"openflow": {"listen": "127.0.0.1:6653"},
            "routers": {"r1": {"dpid": 1, "netns": "r1", "ports": {1: {"tap": "r1-p1", "addresses": ["10.0.1.1/24"]}}}},
            **top}


def test_off_by_default(tmp_path):
    assert config.parse(data(), tmp_path / "t.yaml").ha == HaConfig()
    assert not HaConfig().enabled


def test_enabled_with_postgresql(tmp_path):
    ha = config.parse(data(database=PG, ha={"enabled": True, "node": "a", "lease_seconds": 1,
                                            "converge_timeout": 30, "settle_seconds": 0}), tmp_path / "t.yaml").ha
    assert ha == HaConfig(True, "a", 1.0, 30.0, 0.0)


def test_sqlite_refused_with_a_clear_message(tmp_path):
    with pytest.raises(ConfigError) as exc:
        config.parse(data(database="sqlite:////tmp/x.db", ha={"enabled": True}), tmp_path / "t.yaml")
    assert "ha.enabled" in str(exc.value) and "needs PostgreSQL" in str(exc.value)


def test_default_database_is_sqlite_so_refused(tmp_path):
    with pytest.raises(ConfigError, match="needs PostgreSQL"):
        config.parse(data(ha={"enabled": True}), tmp_path / "t.yaml")


def test_disabled_with_sqlite_is_fine(tmp_path):
    assert not config.parse(data(ha={"enabled": False}), tmp_path / "t.yaml").ha.enabled


@pytest.mark.parametrize("ha, key", [({"enabled": "yes"}, "ha.enabled"), ({"lease_seconds": 0.1}, "ha.lease_seconds"),
                                     ({"converge_timeout": "x"}, "ha.converge_timeout"), ({"nodes": 1}, "nodes"),
                                     ({"node": 5}, "ha.node")])
def test_bad_values_named(tmp_path, ha, key):
    with pytest.raises(ConfigError) as exc:
        config.parse(data(database=PG, ha=ha), tmp_path / "t.yaml")
    assert key in str(exc.value)
