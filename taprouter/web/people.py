"""The Audit log (who changed which policy, when, from what to what) and the Users page (admins:
add, disable, set a role, reset a password)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.contrib.auth.models import User
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from ..db.models import AuditEntry
from . import roles
from .roles import MANAGE_USERS

PER_PAGE = 50
admin = permission_required(MANAGE_USERS, raise_exception=True)


def _changed(before: dict | None, after: dict | None) -> list[tuple[str, object, object]]:
    """The fields that differ: (field, before, after)."""
    before, after = before or {}, after or {}
    keys = [k for k in {**before, **after} if k not in ("router", "name")]
    return [(k, before.get(k), after.get(k)) for k in keys if before.get(k) != after.get(k)]


def audit(request: HttpRequest) -> HttpResponse:
    entries = AuditEntry.objects.order_by("-at", "-id")
    for key in ("router", "name", "who"):
        if request.GET.get(key):
            entries = entries.filter(**{key: request.GET[key]})
    page = Paginator(entries, PER_PAGE).get_page(request.GET.get("page"))
    rows = [{"entry": e, "changes": _changed(e.before, e.after)} for e in page]
    return render(request, "web/audit.html", {"entries": page, "rows": rows, "page": "audit"})


@admin
def users(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        if not request.user.has_perm("auth.add_user"):
            return HttpResponse(status=403)
        try:
            created = roles.create_user(request.POST.get("username", "").strip(),
                                        roles.role(request.POST.get("role", "")),
                                        request.POST.get("password") or None)
        except roles.RoleError as exc:
            messages.error(request, str(exc))
        else:
            said = f"; its password, shown once: {created.password}" if created.password else ""
            messages.success(request, f"added user {created.user} ({created.role.value}){said}")
        return redirect("users")
    listed = []
    for u in User.objects.order_by("username"):
        current = roles.role_of(u)
        listed.append({"user": u, "role": current.value if current else "none"})
    return render(request, "web/users.html", {"users": listed, "roles": roles.ROLES, "page": "users"})


@require_POST
@admin
def user(request: HttpRequest, name: str) -> HttpResponse:
    target = get_object_or_404(User, username=name)
    what = request.POST.get("do")
    if target == request.user and what in ("disable", "role"):
        messages.error(request, "you cannot disable yourself or change your own role")
        return redirect("users")
    if what == "role":
        try:
            new = roles.role(request.POST.get("role", ""))
        except roles.RoleError as exc:
            messages.error(request, str(exc))
            return redirect("users")
        roles.set_role(target, new)
        messages.success(request, f"user {name} is now {new.value}")
    elif what in ("disable", "enable"):
        target.is_active = what == "enable"
        target.save(update_fields=["is_active"])
        messages.success(request, f"user {name} {what}d")
    elif what == "password":
        password = roles.new_password()
        target.set_password(password)
        target.save(update_fields=["password"])
        messages.success(request, f"user {name}'s new password, shown once: {password}")
    else:
        return HttpResponse("do: one of role, disable, enable, password", status=400)
    return redirect("users")
