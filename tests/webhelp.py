"""The web UI under Django's test client: Django set up once per test process with the UI's
settings on a database of its own (the policy tests keep theirs, each under an alias), users of
each role, and a config whose control socket is the test's."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from taprouter import config as config_mod

_DIR: Path | None = None
PASSWORD = "a-long-test-password"
CONFIG = """\
database: sqlite:///{db}
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


def database() -> Path:
    assert _DIR is not None
    return _DIR / "web.db"


def write_config(where: Path, socket: Path) -> Path:
    path = where / "taprouter.yaml"
    path.write_text(CONFIG.format(db=database(), socket=socket))
    return path


def configure_django() -> None:
    """Before any test touches Django: its settings are the web UI's, whichever test comes first."""
    global _DIR
    import django
    from django.conf import settings

    from taprouter.web.setup import settings as web_settings

    if settings.configured:
        return
    _DIR = Path(tempfile.mkdtemp(prefix="taprouter-web-tests-"))
    config = config_mod.load(write_config(_DIR, _DIR / "control.sock"))
    settings.configure(**web_settings(config, secure=False))
    django.setup()
    from django.test.utils import setup_test_environment

    setup_test_environment()  # responses carry their templates' context


def remove() -> None:
    if _DIR is not None:
        shutil.rmtree(_DIR, ignore_errors=True)


def use(config_path: Path):
    """Point the UI at this config (its database is always the session's web database), migrate
    it and make the roles; empty its tables of policies, audit entries and users."""
    from django.conf import settings
    from django.contrib.auth.models import User

    from taprouter.db import models
    from taprouter.web.setup import setup

    config = config_mod.load(config_path)
    setup(config)
    settings.TAPROUTER_CONFIG = config
    models.PolicyStatus.objects.all().delete()
    models.Policy.objects.all().delete()
    models.AuditEntry.objects.all().delete()
    User.objects.all().delete()
    return config


def user(name: str, role: str):
    from taprouter.web import roles

    roles.create_user(name, roles.role(role), PASSWORD)
    from django.contrib.auth.models import User

    return User.objects.get(username=name)


def client(name: str | None = None, role: str | None = None, **kwargs):
    """A test client, logged in as a new user of that role when named."""
    from django.test import Client

    c = Client(**kwargs)
    if name is not None:
        user(name, role or "viewer")
        assert c.login(username=name, password=PASSWORD)
    return c
