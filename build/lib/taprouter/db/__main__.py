"""Django's management commands on taprouter's schema: python -m taprouter.db makemigrations taprouter.

DATABASE names the database (default: a SQLite file in a temporary directory, enough for
makemigrations and sqlmigrate); nothing is migrated before the command runs.
"""

from __future__ import annotations

import os
import sys
import tempfile

from django.core.management import execute_from_command_line

from .setup import configure


def main() -> None:
    url = os.environ.get("DATABASE") or f"sqlite:///{tempfile.mkdtemp(prefix='taprouter-db-')}/scratch.db"
    configure(url, migrate=False)
    execute_from_command_line(["python -m taprouter.db", *sys.argv[1:]])


if __name__ == "__main__":
    main()
