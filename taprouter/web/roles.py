"""Roles as Django groups with permissions: viewer reads, operator also changes policies and
reloads BIRD, admin also manages users. A user has one role: the group they are in."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from enum import Enum

from django.contrib.auth.models import Group, Permission, User
from django.contrib.contenttypes.models import ContentType
from django.db import transaction


class Role(Enum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"


ROLES = tuple(r.value for r in Role)
OPERATE = "taprouter.change_policy"  # change policies, reload BIRD
MANAGE_USERS = "auth.change_user"

# (app_label, model, codename) each role holds; each role holds its predecessors' too.
_GRANTS = {
    Role.VIEWER: (("taprouter", "policy", "view_policy"), ("taprouter", "auditentry", "view_auditentry")),
    Role.OPERATOR: (("taprouter", "policy", "add_policy"), ("taprouter", "policy", "change_policy"),
                    ("taprouter", "policy", "delete_policy")),
    Role.ADMIN: (("auth", "user", "add_user"), ("auth", "user", "change_user"), ("auth", "user", "view_user")),
}


class RoleError(ValueError):
    """A role or user name that cannot be."""


@dataclass(frozen=True)
class Created:
    user: str
    role: Role
    password: str | None  # the generated password, to be shown once; None when one was given


def _permission(alias: str, app_label: str, model: str, codename: str) -> Permission:
    kind, _ = ContentType.objects.db_manager(alias).get_or_create(app_label=app_label, model=model)
    permission, _ = Permission.objects.using(alias).get_or_create(
        content_type=kind, codename=codename, defaults={"name": codename.replace("_", " ")})
    return permission


def ensure(alias: str = "default") -> None:
    """Make the three groups with their permissions (idempotent: run at every start)."""
    held: list[Permission] = []
    with transaction.atomic(using=alias):
        for role in Role:
            held += [_permission(alias, *grant) for grant in _GRANTS[role]]
            group, _ = Group.objects.using(alias).get_or_create(name=role.value)
            group.permissions.set(held)


def role(name: str) -> Role:
    try:
        return Role(name)
    except ValueError:
        raise RoleError(f"{name!r} is not a role (one of {', '.join(ROLES)})") from None


def role_of(user: User) -> Role | None:
    names = set(user.groups.values_list("name", flat=True))
    for candidate in reversed(Role):
        if candidate.value in names:
            return candidate
    return None


def set_role(user: User, new: Role) -> None:
    user.groups.set([Group.objects.get(name=new.value)])


def create_user(name: str, new: Role, password: str | None = None) -> Created:
    """A user with a role; without a password, one is generated (and returned to be shown once)."""
    if not name or len(name) > 150 or not all(c.isalnum() or c in "@.+-_" for c in name):
        raise RoleError(f"{name!r} is not a user name: letters, digits and @.+-_, at most 150")
    if User.objects.filter(username=name).exists():
        raise RoleError(f"user {name!r} exists already")
    generated = None if password else new_password()
    with transaction.atomic():
        user = User.objects.create_user(name, password=password or generated)
        set_role(user, new)
    return Created(name, new, generated)


def new_password() -> str:
    return secrets.token_urlsafe(12)


def context(request) -> dict:
    """Template context: the user's role and what they may do."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    current = role_of(user)
    return {"role": current.value if current else "none", "may_operate": user.has_perm(OPERATE),
            "may_manage_users": user.has_perm(MANAGE_USERS)}
