"""The generation counter: its one row, and the triggers that raise it on every change to a policy.

The triggers fire for any writer, plain SQL included, so the daemon learns of every change by
polling one row. PostgreSQL raises it once per statement (TRUNCATE included), SQLite once per row
(it has no statement triggers): readers compare values, they never count steps.
"""

from django.db import migrations

from taprouter.db.vendorsql import VendorSQL

BUMP = "UPDATE taprouter_policy_generation SET value = value + 1 WHERE id = 1"

SQLITE = [
    f"CREATE TRIGGER taprouter_policy_{op.lower()} AFTER {op} ON taprouter_policy BEGIN {BUMP}; END"
    for op in ("INSERT", "UPDATE", "DELETE")
]
SQLITE_DROP = [f"DROP TRIGGER taprouter_policy_{op}" for op in ("insert", "update", "delete")]

POSTGRESQL = [
    "CREATE FUNCTION taprouter_policy_bump() RETURNS trigger LANGUAGE plpgsql AS "
    f"$$ BEGIN {BUMP}; RETURN NULL; END $$",
    "CREATE TRIGGER taprouter_policy_bump AFTER INSERT OR UPDATE OR DELETE ON taprouter_policy "
    "FOR EACH STATEMENT EXECUTE FUNCTION taprouter_policy_bump()",
    "CREATE TRIGGER taprouter_policy_truncate AFTER TRUNCATE ON taprouter_policy "
    "FOR EACH STATEMENT EXECUTE FUNCTION taprouter_policy_bump()",
]
POSTGRESQL_DROP = [
    "DROP TRIGGER taprouter_policy_truncate ON taprouter_policy",
    "DROP TRIGGER taprouter_policy_bump ON taprouter_policy",
    "DROP FUNCTION taprouter_policy_bump()",
]

ROW = "INSERT INTO taprouter_policy_generation (id, value) VALUES (1, 0)"
ROW_DROP = "DELETE FROM taprouter_policy_generation WHERE id = 1"


class Migration(migrations.Migration):

    dependencies = [
        ("taprouter", "0001_initial"),
    ]

    operations = [
        VendorSQL(forwards={"sqlite": [ROW, *SQLITE], "postgresql": [ROW, *POSTGRESQL]},
                  backwards={"sqlite": [*SQLITE_DROP, ROW_DROP], "postgresql": [*POSTGRESQL_DROP, ROW_DROP]}),
    ]
