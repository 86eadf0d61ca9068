"""Fixtures shared by the policy tests: a database of each kind, fresh for every test.

SQLite: a copy of a file migrated once per session. PostgreSQL: one throwaway cluster per session
(tests/pgcluster.py) with one migrated database, its tables emptied before each test.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pgcluster import Cluster

import webhelp

BACKENDS = ("sqlite", "postgresql")
TABLES = ("taprouter_policy", "taprouter_policy_status", "taprouter_audit")


@pytest.fixture(scope="session")
def pg_cluster():
    cluster = Cluster().start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def pg_database(pg_cluster) -> str:
    from taprouter.db.setup import configure

    pg_cluster.create_database("taprouter_tests")
    url = pg_cluster.url("taprouter_tests")
    configure(url)
    return url


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    from django.db import connections

    from taprouter.db.setup import configure

    path = tmp_path_factory.mktemp("sqlite-template") / "taprouter.db"
    alias = configure(f"sqlite:///{path}")
    connections[alias].close()  # the last connection's close folds the WAL into the file
    return path


@pytest.fixture(params=BACKENDS)
def database_url(request, tmp_path) -> str:
    """A migrated, empty database: a SQLite file, or the session's PostgreSQL database emptied."""
    from django.db import connections

    from taprouter.db.setup import configure

    if request.param == "sqlite":
        path = tmp_path / "lib" / "taprouter.db"
        path.parent.mkdir()
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        url = f"sqlite:///{path}"
        yield url
        connections[configure(url)].close()
        return
    url = request.getfixturevalue("pg_database")
    with connections[configure(url)].cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY")
    yield url


def pytest_configure(config):
    webhelp.configure_django()


def pytest_unconfigure(config):
    webhelp.remove()


@pytest.fixture(autouse=True)
def _root_logging_restored():
    """A test that runs the command line in this process (cli.main) sets up logging on the
    stderr pytest gave it, which pytest closes after the test; a handler left on it makes every
    later log line, from any test's threads, fail to write. Put the root logger back as it was."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
    root.setLevel(level)
