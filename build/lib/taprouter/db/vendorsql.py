"""A migration operation running SQL written for each database vendor (SQLite, PostgreSQL)."""

from __future__ import annotations

from django.db import migrations


class VendorSQL(migrations.RunSQL):
    """RunSQL with one list of statements per vendor: `forwards` and `backwards` map
    connection.vendor ("sqlite", "postgresql") to statements. A vendor missing is an error, not a
    silent no-op: the schema would differ between backends."""

    def __init__(self, forwards: dict[str, list[str]], backwards: dict[str, list[str]]):
        self.forwards, self.backwards = forwards, backwards
        super().__init__(sql=forwards, reverse_sql=backwards)

    def deconstruct(self):
        return self.__class__.__qualname__, [], {"forwards": self.forwards, "backwards": self.backwards}

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        self._run_sql(schema_editor, self._for(self.forwards, schema_editor))

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        self._run_sql(schema_editor, self._for(self.backwards, schema_editor))

    @staticmethod
    def _for(statements: dict[str, list[str]], schema_editor) -> list[str]:
        vendor = schema_editor.connection.vendor
        if vendor not in statements:
            raise NotImplementedError(f"no SQL for {vendor}: taprouter supports {', '.join(statements)}")
        return statements[vendor]
