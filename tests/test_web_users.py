"""The Users page (admins only): add a user with a role, set a role, disable, reset a password."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

import webhelp
from taprouter.web import roles


@pytest.fixture
def admin(tmp_path):
    webhelp.use(webhelp.write_config(tmp_path, tmp_path / "control.sock"))
    return webhelp.client("ada", "admin")


def said(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def test_the_roles_are_groups_with_permissions(admin):
    viewer, operator, boss = (webhelp.user(n, r) for n, r in (("v", "viewer"), ("o", "operator"), ("a", "admin")))
    assert [roles.role_of(u) for u in (viewer, operator, boss)] == [roles.Role.VIEWER, roles.Role.OPERATOR,
                                                                      roles.Role.ADMIN]
    assert (viewer.has_perm(roles.OPERATE), operator.has_perm(roles.OPERATE), boss.has_perm(roles.OPERATE)) == \
        (False, True, True)
    assert (operator.has_perm(roles.MANAGE_USERS), boss.has_perm(roles.MANAGE_USERS)) == (False, True)
    assert all(u.has_perm("taprouter.view_policy") for u in (viewer, operator, boss))
    roles.ensure()  # again: idempotent
    assert sorted(g.name for g in roles.Group.objects.all()) == ["admin", "operator", "viewer"]


def test_add_a_user_with_a_password_or_a_generated_one(admin):
    response = admin.post("/users/", {"username": "olga", "role": "operator", "password": "pw-of-olga-1"},
                          follow=True)
    assert "added user olga (operator)" in said(response)
    assert webhelp.client().login(username="olga", password="pw-of-olga-1")
    response = admin.post("/users/", {"username": "vera", "role": "viewer"}, follow=True)
    [message] = [m for m in said(response) if m.startswith("added user vera")]
    password = message.rsplit("shown once: ", 1)[1]
    assert webhelp.client().login(username="vera", password=password)
    assert User.objects.get(username="vera").password != password  # hashed
    for bad, words in (({"username": "olga", "role": "viewer"}, "exists already"),
                       ({"username": "x y", "role": "viewer"}, "is not a user name"),
                       ({"username": "zed", "role": "root"}, "is not a role")):
        assert any(words in m for m in said(admin.post("/users/", bad, follow=True))), bad
    assert not User.objects.filter(username__in=["x y", "zed"]).exists()


def test_set_a_role_disable_enable_and_reset_a_password(admin):
    webhelp.user("olga", "viewer")
    admin.post("/users/olga/", {"do": "role", "role": "operator"})
    assert roles.role_of(User.objects.get(username="olga")) is roles.Role.OPERATOR
    admin.post("/users/olga/", {"do": "disable"})
    assert not webhelp.client().login(username="olga", password=webhelp.PASSWORD)
    admin.post("/users/olga/", {"do": "enable"})
    assert webhelp.client().login(username="olga", password=webhelp.PASSWORD)
    response = admin.post("/users/olga/", {"do": "password"}, follow=True)
    password = [m for m in said(response) if "new password" in m][0].rsplit(": ", 1)[1]
    assert not webhelp.client().login(username="olga", password=webhelp.PASSWORD)
    assert webhelp.client().login(username="olga", password=password)
    assert admin.post("/users/olga/", {"do": "explode"}).status_code == 400
    assert admin.post("/users/nobody/", {"do": "disable"}).status_code == 404


def test_an_admin_cannot_lock_themselves_out(admin):
    admin.post("/users/ada/", {"do": "disable"})
    admin.post("/users/ada/", {"do": "role", "role": "viewer"})
    ada = User.objects.get(username="ada")
    assert ada.is_active and roles.role_of(ada) is roles.Role.ADMIN


def test_the_users_page_lists_users_and_roles(admin):
    webhelp.user("olga", "operator")
    listed = {u["user"].username: u["role"] for u in admin.get("/users/").context["users"]}
    assert listed == {"ada": "admin", "olga": "operator"}
