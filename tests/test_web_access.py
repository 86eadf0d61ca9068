"""The web UI's gate: every URL needs a login, roles decide who may change what (403 and nothing
changed otherwise), CSRF is enforced, sessions expire, failed logins are logged with their address."""

from __future__ import annotations

import logging

import pytest
from django.urls import URLPattern, get_resolver

import webhelp
from taprouter.db import models
from taprouter.policy.model import parse
from taprouter.web.setup import SESSION_AGE

ARGS = {"router": "r1", "name": "p1"}


@pytest.fixture
def web(tmp_path):
    return webhelp.use(webhelp.write_config(tmp_path, tmp_path / "control.sock"))


def every_url() -> list[str]:
    """Every URL the UI has, its arguments filled in."""
    from django.urls import reverse

    found = []
    for pattern in get_resolver().url_patterns:
        assert isinstance(pattern, URLPattern)
        wanted = {k: ARGS[k] for k in pattern.pattern.converters}
        found.append(reverse(pattern.name, kwargs=wanted))
    return found


def test_every_url_but_the_login_page_sends_a_stranger_to_log_in(web):
    from django.test import Client

    stranger = Client()
    urls = every_url()
    assert len(urls) >= 15
    for url in urls:
        for method in (stranger.get, stranger.post):
            response = method(url)
            if url == "/accounts/login/":
                assert response.status_code == 200
                continue
            assert response.status_code == 302, (url, response.status_code)
            assert response["Location"].startswith("/accounts/login/?next="), url
    assert models.Policy.objects.count() == 0


def test_the_login_page_takes_username_and_password(web):
    from django.test import Client

    webhelp.user("olga", "operator")
    browser = Client()
    page = browser.get("/accounts/login/").content.decode()
    assert 'name="username"' in page and 'name="password"' in page
    response = browser.post("/accounts/login/", {"username": "olga", "password": webhelp.PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/"
    assert browser.get("/").status_code == 200


def test_a_failed_login_is_logged_with_its_address(web, caplog):
    from django.test import Client

    webhelp.user("olga", "operator")
    with caplog.at_level(logging.WARNING, logger="taprouter.web"):
        response = Client(REMOTE_ADDR="192.0.2.7").post("/accounts/login/",
                                                        {"username": "olga", "password": "wrong"})
    assert response.status_code == 200 and "did not match" in response.content.decode()
    assert "failed login for 'olga' from 192.0.2.7" in caplog.text


def test_a_disabled_user_cannot_log_in(web):
    from django.test import Client

    user = webhelp.user("olga", "operator")
    user.is_active = False
    user.save()
    assert not Client().login(username="olga", password=webhelp.PASSWORD)


def test_sessions_expire(web):
    from django.conf import settings

    assert settings.SESSION_COOKIE_AGE == SESSION_AGE <= 12 * 3600
    browser = webhelp.client("olga", "operator")
    assert browser.get("/").status_code == 200
    session = browser.session
    session.set_expiry(-1)  # its time is up
    session.save()
    response = browser.get("/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def _stored_policy():
    from django.conf import settings

    from taprouter.policy.store import Store

    return Store.open(settings.TAPROUTER_CONFIG, user="setup").add(
        parse("r1", "p1", {"action": "drop", "dst": "10.0.2.0/24"}))


def _state():
    from django.contrib.auth.models import User

    return (list(models.Policy.objects.values_list("router", "name", "enabled", "dst", "updated_at")),
            models.AuditEntry.objects.count(),
            list(User.objects.order_by("username").values_list("username", "is_active", "password")),
            sorted(User.objects.values_list("username", "groups__name")))


CHANGES = [
    ("/policies/add/", {"router": "r1", "name": "p2", "action": "drop"}),
    ("/policies/r1/p1/edit/", {"action": "permit"}),
    ("/policies/r1/p1/disable/", {}),
    ("/policies/r1/p1/enable/", {}),
    ("/policies/r1/p1/delete/", {}),
    ("/policies/import/", {}),
    ("/routing/bird/reload/", {}),
    ("/users/", {"username": "mallory", "role": "admin"}),
    ("/users/olga/", {"do": "role", "role": "admin"}),
    ("/users/olga/", {"do": "disable"}),
    ("/users/olga/", {"do": "password"}),
]


def test_a_viewer_gets_403_on_every_change_and_nothing_changes(web):
    _stored_policy()
    webhelp.user("olga", "operator")
    viewer = webhelp.client("vera", "viewer")
    before = _state()
    for url, data in CHANGES:
        assert viewer.post(url, data).status_code == 403, url
    assert _state() == before
    for url in ("/", "/devices/", "/routing/", "/policies/", "/audit/", "/policies/export/"):
        assert viewer.get(url).status_code == 200, url


def test_an_operator_gets_403_on_the_users_pages(web):
    operator = webhelp.client("olga", "operator")
    webhelp.user("vera", "viewer")
    before = _state()
    assert operator.get("/users/").status_code == 403
    for url, data in CHANGES[-4:]:
        assert operator.post(url, data).status_code == 403, url
    assert _state() == before


def test_csrf_is_enforced(web):
    browser = webhelp.client("olga", "operator", enforce_csrf_checks=True)
    response = browser.post("/policies/add/", {"router": "r1", "name": "p2", "action": "drop"})
    assert response.status_code == 403 and b"CSRF" in response.content
    assert models.Policy.objects.count() == 0
    page = browser.get("/policies/add/")
    token = page.context["csrf_token"]
    response = browser.post("/policies/add/", {"router": "r1", "name": "p2", "action": "drop",
                                               "csrfmiddlewaretoken": str(token)})
    assert response.status_code == 302
    assert models.Policy.objects.filter(name="p2").exists()


def test_the_menu_shows_users_only_to_admins(web):
    admin = webhelp.client("ada", "admin")
    operator = webhelp.client("olga", "operator")
    assert 'href="/users/"' in admin.get("/").content.decode()
    assert 'href="/users/"' not in operator.get("/").content.decode()


def test_static_files_are_served(web):
    browser = webhelp.client("vera", "viewer")
    for name in ("app.css", "live.js"):
        response = browser.get(f"/static/web/{name}")
        assert response.status_code == 200
        assert b"".join(response.streaming_content)
