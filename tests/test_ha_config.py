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


def test_metrics_show_the_role_generation_and_stale_flows():
    from prometheus_client import CollectorRegistry, generate_latest

    from taprouter.control.metrics import MetricsSnapshot, RouterFigures, SnapshotCollector

    registry = CollectorRegistry()
    registry.register(SnapshotCollector(lambda: MetricsSnapshot((
        RouterFigures("r1", ha_role="master", ha_generation=7, ha_stale_flows=3), RouterFigures("r2")))))
    text = generate_latest(registry).decode()
    assert 'taprouter_ha_role{role="master",router="r1"} 1.0' in text
    assert 'taprouter_ha_role{role="standby",router="r1"} 0.0' in text
    assert 'taprouter_ha_generation{router="r1"} 7.0' in text
    assert 'taprouter_ha_stale_flows{router="r1"} 3.0' in text
    assert 'router="r2"' not in "".join(line for line in text.splitlines() if line.startswith("taprouter_ha"))


def test_status_text_shows_ha_and_a_fenced_router_is_a_problem():
    from pathlib import Path

    from taprouter import status

    ha = {"role": "fenced", "generation": 4, "holder": "a", "node": "a", "lease_error": "server gone",
          "stale_flows": 0}
    entry = {"daemon": {"source": "control socket", "pid": 1}, "switch": {"connected": True}, "bird": None, "ha": ha}
    assert status.problems(entry, False, Path("/x"), None) == ["HA: fenced (server gone)"]
    entry["ha"] = dict(ha, role="standby", lease_error=None, holder="b")
    assert status.problems(entry, False, Path("/x"), None) == []


def test_a_reload_that_changes_ha_needs_a_restart(tmp_path):
    from taprouter import reconfig

    old = config.parse(data(database=PG, ha={"enabled": True}), tmp_path / "t.yaml")
    new = config.parse(data(database=PG, ha={"enabled": True, "lease_seconds": 3}), tmp_path / "t.yaml")
    change = reconfig.diff(old, new)
    assert [r for r in change.restart if r.startswith("ha:")]
    assert not reconfig.diff(old, old).restart
