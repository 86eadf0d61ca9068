"""The config's database, control, metrics and web keys: defaults, accepted forms, and refusals naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from taprouter import config, dburl
from taprouter.config import ConfigError, Listen


def good(**extra) -> dict:
    return {"routers": {"r1": {"dpid": 1, "ports": {1: {"tap": "r1-p1", "addresses": ["10.0.1.1/24"]}}}},
            **extra}


def problems(data: dict, tmp_path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        config.parse(data, tmp_path / "t.yaml")
    return [p.split(": ", 1)[1] for p in info.value.problems]


def test_defaults(tmp_path, monkeypatch):
    monkeypatch.setenv("TAPROUTER_RUN_DIR", str(tmp_path / "run"))
    c = config.parse(good(), tmp_path / "t.yaml")
    assert c.database == "sqlite:////var/lib/taprouter/taprouter.db"
    assert c.control.socket == tmp_path / "run" / "control.sock"
    assert c.metrics.listen == Listen("127.0.0.1", 9362)
    assert c.web.listen == Listen("127.0.0.1", 8080) and c.web.tls is None


def test_every_key_given(tmp_path):
    for name in ("cert.pem", "key.pem"):
        (tmp_path / name).write_text("x")
    c = config.parse(good(database="postgresql://tr@/taprouter?host=/run/postgresql",
                          control={"socket": "run/ctl.sock"}, metrics={"listen": "[::1]:9000"},
                          web={"listen": "0.0.0.0:8443", "tls": {"cert": "cert.pem", "key": "key.pem"}}),
                     tmp_path / "t.yaml")
    assert c.database == "postgresql://tr@/taprouter?host=/run/postgresql"
    assert c.control.socket == tmp_path / "run" / "ctl.sock"  # relative to the file, as other paths
    assert c.metrics.listen == Listen("::1", 9000)
    assert c.web.listen == Listen("0.0.0.0", 8443)
    assert (c.web.tls.cert, c.web.tls.key, c.web.tls.ca) == (tmp_path / "cert.pem", tmp_path / "key.pem", None)


def test_metrics_null_turns_it_off(tmp_path):
    assert config.parse(good(metrics={"listen": None}), tmp_path / "t.yaml").metrics.listen is None


@pytest.mark.parametrize("data, key, words", [
    (dict(database="mysql://x@/y"), "database", "'mysql' is not sqlite or postgresql"),
    (dict(database="sqlite:///relative.db"), "database", "absolute path, four slashes"),
    (dict(database="postgresql://u:secret@host:0/db"), "database", "port 0 is not in 1..65535"),
    (dict(database="postgresql://u:secret@host:99999/db"), "database", "is not a PostgreSQL URL"),
    (dict(database="postgresql://u@/db?hots=/run"), "database", "?hots= is not a parameter"),
    (dict(database="postgresql://u@host/"), "database", "names no database"),
    (dict(database=5), "database", "must be a URL"),
    (dict(control="/run/x.sock"), "control", "must be a mapping with 'socket'"),
    (dict(control={"socket": "/" + "s" * 120}), "control.socket", "longer than a Unix socket's path"),
    (dict(control={"path": "/x"}), "control.path", "unknown key"),
    (dict(metrics={"listen": "localhost:9362"}), "metrics.listen", "'localhost' is not an IP address"),
    (dict(metrics={"listen": 9362}), "metrics.listen", "must be HOST:PORT"),
    (dict(metrics={"listen": "127.0.0.1:6653"}), "metrics.listen", "is also openflow.listen's port"),
    (dict(web={"listen": "127.0.0.1:0"}), "web.listen", "not in 1..65535"),
    (dict(web={"listen": "0.0.0.0:9362"}), "web.listen", "is also metrics.listen's port"),
    (dict(web={"tls": {"cert": "missing.pem", "key": "missing.pem"}}), "web.tls.cert", "does not exist"),
    (dict(web={"tls": {"cert": "c.pem"}}), "web.tls.key", "is required"),
    (dict(web={"tls": {"cert": "c.pem", "key": "k.pem", "ca": "ca.pem"}}), "web.tls.ca", "unknown key"),
    (dict(web={"tls": True}), "web.tls", "must be a mapping with 'cert' and 'key'"),
])
def test_refusals_name_the_key(tmp_path, data, key, words):
    (tmp_path / "c.pem").write_text("x")
    found = problems(good(**data), tmp_path)
    assert any(p.startswith(f"{key}: ") and words in p for p in found), found


def test_a_refused_url_never_shows_its_password(tmp_path):
    found = problems(good(database="postgresql://u:hunter2@db.example:0/x"), tmp_path)
    assert found and not any("hunter2" in p for p in found)


@pytest.mark.parametrize("text, parsed", [
    ("sqlite:////var/lib/taprouter/taprouter.db", dburl.DatabaseUrl("sqlite", "/var/lib/taprouter/taprouter.db")),
    ("postgresql://tr@/policies?host=/run/postgresql",
     dburl.DatabaseUrl("postgresql", "policies", "tr", "", "/run/postgresql")),
    ("postgresql://tr:p%40ss@db.example:5433/policies?sslmode=require",
     dburl.DatabaseUrl("postgresql", "policies", "tr", "p@ss", "db.example", 5433, (("sslmode", "require"),))),
])
def test_database_urls(text, parsed):
    assert dburl.parse(text) == parsed
    assert "p@ss" not in parsed.shown() and parsed.name in parsed.shown()
