"""Django set up in code from a `database:` URL, and the schema migrated on first use.

No settings file: `settings(url)` builds them, `configure(url)` applies them once per process and
returns the connection alias for that URL (the first URL is Django's "default"; another URL, as the
tests use, gets an alias of its own). It is idempotent and safe to call from several threads; the
migration runs once per database, under a lock that other processes respect too (a file lock for
SQLite, an advisory lock for PostgreSQL), so a daemon and a CLI started together do not race.
"""

from __future__ import annotations

import fcntl
import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from .. import dburl

APPS = ("django.contrib.contenttypes", "django.contrib.auth", "taprouter.db")
SQLITE_TIMEOUT = 20  # seconds a writer waits for another's transaction before "database is locked"
_ADVISORY_KEY = 0x7461_7072  # "tapr": PostgreSQL's lock for migrating taprouter's schema

_lock = threading.Lock()
_aliases: dict[str, str] = {}  # URL -> connection alias


class DatabaseProblem(Exception):
    """The database cannot be opened or migrated; the message says which and why."""


# Connections are kept (one per thread) and checked before each use (store._fresh) rather than
# opened per operation, Django's default: opening the SQLite file with its PRAGMAs, or a session
# with PostgreSQL, cost the daemon more than its read of one changed policy.
KEEP = {"CONN_MAX_AGE": None, "CONN_HEALTH_CHECKS": True}


def database(url: str) -> dict[str, Any]:
    """Django's DATABASES entry for a URL."""
    parsed = dburl.parse(url)
    if parsed.engine == "sqlite":
        return {
            **KEEP, "ENGINE": "django.db.backends.sqlite3", "NAME": parsed.name,
            # IMMEDIATE: a writer takes the lock when it begins, so two writers queue up instead of
            # one failing at once when it upgrades a read lock. WAL: readers (the daemon) do not
            # block the writer (the CLI), nor the writer them.
            "OPTIONS": {"timeout": SQLITE_TIMEOUT, "transaction_mode": "IMMEDIATE",
                        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL"},
        }
    return {
        "ENGINE": "django.db.backends.postgresql", "NAME": parsed.name, "USER": parsed.user,
        "PASSWORD": parsed.password, "HOST": parsed.host, "PORT": str(parsed.port or ""),
        "OPTIONS": dict(parsed.options), **KEEP,
    }


def settings(url: str) -> dict[str, Any]:
    """Everything Django needs to use the tables (the web UI adds its own apps and middleware)."""
    return {
        "DATABASES": {"default": database(url)},
        "INSTALLED_APPS": list(APPS),
        "USE_TZ": True,
        "TIME_ZONE": "UTC",
        "DEFAULT_AUTO_FIELD": "django.db.models.AutoField",
        "LOGGING_CONFIG": None,  # leave the process's logging as taprouter set it up
    }


def configure(url: str, migrate: bool = True) -> str:
    """Set Django up for `url` (once), migrate its database when it is new or behind, and return
    the alias to use it with. DatabaseProblem when it cannot be reached or migrated."""
    with _lock:
        alias = _aliases.get(url)
        if alias is not None:
            return alias
        alias = _register(url)
        if migrate:
            _migrate(url, alias)
        _aliases[url] = alias
        return alias


def _register(url: str) -> str:
    import django
    from django.conf import settings as django_settings
    from django.db import connections

    if not django_settings.configured:
        django_settings.configure(**settings(url))
        django.setup()
        return "default"
    if _same(django_settings.DATABASES["default"], database(url)):
        return "default"  # set up by the web UI (or another caller) for this same database
    alias = f"taprouter_{len(_aliases) + 1}"
    connections.settings[alias] = connections.configure_settings({"default": {}, alias: database(url)})[alias]
    django_settings.DATABASES[alias] = connections.settings[alias]
    return alias


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    keys = ("ENGINE", "NAME", "USER", "HOST", "PORT")
    return all(a.get(k, "") == b.get(k, "") for k in keys)


def _migrate(url: str, alias: str) -> None:
    from django.core.management import call_command
    from django.db import DatabaseError, connections
    from django.db.migrations.executor import MigrationExecutor

    parsed = dburl.parse(url)
    try:
        with _migration_lock(parsed, alias):
            executor = MigrationExecutor(connections[alias])
            if executor.migration_plan(executor.loader.graph.leaf_nodes()):
                call_command("migrate", database=alias, interactive=False, verbosity=0)
    except (DatabaseError, OSError) as exc:
        connections[alias].close()
        raise DatabaseProblem(f"{parsed.shown()}: {' '.join(str(exc).split())}") from None


@contextmanager
def _migration_lock(parsed: dburl.DatabaseUrl, alias: str) -> Iterator[None]:
    from django.db import connections

    if parsed.engine == "sqlite":
        # A lock on the directory, not the file: SQLite's own locks are POSIX locks, which this
        # process would drop by closing any descriptor of the database file.
        directory = Path(parsed.name).parent
        directory.mkdir(parents=True, exist_ok=True, mode=0o750)
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)
        return
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s)", [_ADVISORY_KEY])
        try:
            yield
        finally:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [_ADVISORY_KEY])
