"""The generation counter moves on every change to the policy table, plain SQL included, on both
backends; and configure() makes a new database ready on first use, once, from any thread."""

from __future__ import annotations

import threading

import pytest
from django.core.management import call_command
from django.db import connections

from policyhelp import open_store
from taprouter.db.setup import configure
from taprouter.policy.model import State, Status, parse


def sql(alias: str, statement: str) -> None:
    with connections[alias].cursor() as cursor:
        cursor.execute(statement)


def test_plain_sql_moves_the_generation(tmp_path, database_url):
    store = open_store(tmp_path, database_url)
    seen = [store.generation()]

    def moved() -> bool:
        seen.append(store.generation())
        return seen[-1] != seen[-2]

    sql(store.alias, "INSERT INTO taprouter_policy (router, name, action, dst) VALUES ('r1', 'x', 'drop', '10.9.0.0/16')")
    assert moved()
    assert [p.name for p in store.policies()] == ["x"]  # the database's defaults make it a whole policy
    sql(store.alias, "UPDATE taprouter_policy SET priority = 7 WHERE name = 'x'")
    assert moved()
    sql(store.alias, "UPDATE taprouter_policy SET priority = 7 WHERE name = 'nobody'")
    seen.append(store.generation())  # a statement that changes no row may move it or not: no assertion
    store.write_statuses([Status(store.get("r1", "x").id, State.INSTALLED, packets=5)])
    assert not moved()  # the daemon's status writes are in another table
    sql(store.alias, "DELETE FROM taprouter_policy WHERE name = 'x'")
    assert moved()
    store.add(parse("r1", "y", {"action": "drop"}))
    assert moved()


def test_the_migrations_match_the_models(database_url):
    configure(database_url)
    call_command("makemigrations", "taprouter", check=True, dry_run=True, verbosity=0)  # SystemExit if not


def test_first_use_of_a_sqlite_file_creates_it_once_from_any_thread(tmp_path):
    url = f"sqlite:///{tmp_path}/new/dir/taprouter.db"
    aliases: list[str] = []
    threads = [threading.Thread(target=lambda: aliases.append(configure(url))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(aliases)) == 1 and len(aliases) == 4
    assert (tmp_path / "new" / "dir" / "taprouter.db").is_file()
    store = open_store(tmp_path, url)
    assert store.generation() == 0 and store.policies() == []
    connections[aliases[0]].close()


def test_first_use_of_a_postgresql_database_migrates_it(tmp_path, pg_cluster):
    pg_cluster.create_database("taprouter_first_use")
    url = pg_cluster.url("taprouter_first_use")
    store = open_store(tmp_path, url)
    assert store.generation() == 0
    store.add(parse("r1", "a", {"action": "drop"}))
    assert store.generation() == 1
    connections[store.alias].close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_trigger_migration_reverses(tmp_path, backend, request):
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path}/r.db"
    else:
        cluster = request.getfixturevalue("pg_cluster")
        cluster.create_database("taprouter_reverse")
        url = cluster.url("taprouter_reverse")
    alias = configure(url)
    call_command("migrate", "taprouter", "0001", database=alias, verbosity=0)
    sql(alias, "INSERT INTO taprouter_policy (router, name, action) VALUES ('r1', 'x', 'drop')")
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT count(*) FROM taprouter_policy_generation")
        assert cursor.fetchone() == (0,)  # no row, and no trigger left to update it
    call_command("migrate", "taprouter", database=alias, verbosity=0)
    sql(alias, "DELETE FROM taprouter_policy")
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT value FROM taprouter_policy_generation")
        assert cursor.fetchone() == (1,)
    connections[alias].close()


def test_the_store_outlives_a_dropped_postgresql_connection(tmp_path, pg_database, pg_cluster):
    """The daemon polls for days: a server that drops its connection costs it nothing."""
    import psycopg

    store = open_store(tmp_path, pg_database)
    generation = store.generation()
    with psycopg.connect(host=str(pg_cluster.socket_dir), dbname="postgres", user="taprouter",
                         autocommit=True) as admin:
        killed = admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = %s",
                               ["taprouter_tests"]).fetchone()[0]
    assert killed >= 1
    assert store.generation() == generation
    assert store.add(parse("r1", "after", {"action": "drop"})).id is not None


def test_a_thread_keeps_its_connection_from_one_operation_to_the_next(tmp_path, database_url):
    # Opening one per operation (Django's default) cost the daemon more than reading a policy.
    store = open_store(tmp_path, database_url)
    store.generation()
    first = connections[store.alias].connection
    store.add(parse("r1", "kept", {"action": "drop"}))
    store.named("r1", ["kept"])
    assert connections[store.alias].connection is first
