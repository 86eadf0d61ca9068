"""The web UI's Django app: it logs failed logins with the address they came from."""

from __future__ import annotations

import logging

from django.apps import AppConfig

LOG = logging.getLogger("taprouter.web")


def client_address(request) -> str:
    """The peer's address as the server saw it (no proxy headers are trusted)."""
    return request.META.get("REMOTE_ADDR", "?") if request is not None else "?"


def _login_failed(sender, credentials, request=None, **kwargs) -> None:
    LOG.warning("failed login for %r from %s", credentials.get("username", "?"), client_address(request))


class WebConfig(AppConfig):
    name = "taprouter.web"
    label = "taprouter_web"
    verbose_name = "taprouter web UI"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_login_failed

        user_login_failed.connect(_login_failed, dispatch_uid="taprouter.web.login_failed")
