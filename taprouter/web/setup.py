"""Django set up for the web UI: the database's settings (db.setup) plus auth, sessions, CSRF,
templates and static files; the signing key kept in the database; the roles made."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from ..config import Config
from ..db import setup as db_setup

HERE = Path(__file__).parent
SESSION_AGE = 8 * 3600  # seconds a login lasts (a working day), then the user logs in again
APPS = ("django.contrib.contenttypes", "django.contrib.auth", "django.contrib.sessions",
        "django.contrib.messages", "django.contrib.staticfiles", "taprouter.db", "taprouter.web")


def settings(config: Config, secure: bool) -> dict[str, Any]:
    """Everything Django needs to serve the UI for this config (`secure`: served over HTTPS)."""
    base = db_setup.settings(config.database)
    return {
        **base,
        "INSTALLED_APPS": list(APPS),
        # Replaced by the key kept in the database once it can be read (setup below); never used
        # to sign anything before.
        "SECRET_KEY": secrets.token_urlsafe(50),
        "DEBUG": False,
        "ALLOWED_HOSTS": ["*"],  # the bind address is the access control; Host is not trusted for links
        "ROOT_URLCONF": "taprouter.web.urls",
        "MIDDLEWARE": [
            "django.middleware.security.SecurityMiddleware",
            "whitenoise.middleware.WhiteNoiseMiddleware",
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.common.CommonMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django.contrib.auth.middleware.LoginRequiredMiddleware",
            "django.contrib.messages.middleware.MessageMiddleware",
            "django.middleware.clickjacking.XFrameOptionsMiddleware",
        ],
        "TEMPLATES": [{
            "BACKEND": "django.template.backends.django.DjangoTemplates",
            "DIRS": [], "APP_DIRS": True,
            "OPTIONS": {"context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "taprouter.web.roles.context",
            ]},
        }],
        "STATIC_URL": "/static/",
        # Served from the app's static/ by WhiteNoise, with no collectstatic step.
        "WHITENOISE_USE_FINDERS": True,
        "WHITENOISE_AUTOREFRESH": False,
        "LOGIN_URL": "/accounts/login/",
        "LOGIN_REDIRECT_URL": "/",
        "LOGOUT_REDIRECT_URL": "/accounts/login/",
        "SESSION_COOKIE_AGE": SESSION_AGE,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": secure,
        "CSRF_COOKIE_SECURE": secure,
        "X_FRAME_OPTIONS": "DENY",
        "SECURE_CONTENT_TYPE_NOSNIFF": True,
        "MESSAGE_STORAGE": "django.contrib.messages.storage.session.SessionStorage",
        "TAPROUTER_CONFIG": config,
    }


def setup(config: Config, secure: bool = False) -> str:
    """Configure Django for the UI (once per process), migrate, load the signing key and make the
    roles; the connection alias. db_setup.DatabaseProblem when the database cannot be used."""
    from django.conf import settings as django_settings

    if not django_settings.configured:
        import django

        django_settings.configure(**settings(config, secure))
        django.setup()
    alias = db_setup.configure(config.database)
    django_settings.SECRET_KEY = signing_key(alias)
    from . import roles

    roles.ensure(alias)
    return alias


def signing_key(alias: str) -> str:
    """The key every process serving this database signs sessions and CSRF tokens with; made once."""
    from ..db.models import Secret

    secret, _ = Secret.objects.using(alias).get_or_create(
        name="web.secret_key", defaults={"value": secrets.token_urlsafe(50)})
    return secret.value
