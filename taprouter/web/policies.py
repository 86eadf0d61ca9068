"""The Policies pages: the list with live state and counters; add, edit, enable, disable, delete,
import and export, each through the policy store and then told to the daemon as the CLI does."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from ..policy import commands
from ..policy.model import PolicyError
from ..policy.store import DatabaseError, DatabaseProblem
from . import context
from .forms import PolicyForm, initial
from .roles import OPERATE

operator = permission_required(OPERATE, raise_exception=True)  # a viewer gets 403
PER_PAGE = 100  # policies a page shows (and its live part renders every second)


def _notify(request: HttpRequest, store, router: str, names: list[str]) -> None:
    commands.notify(context.config(), router, names, store.last_write,
                    report=lambda line: messages.warning(request, line))


@dataclass(frozen=True)
class Window:
    """A page of the policy list (what the template asks of Django's Page), from the store's window."""

    items: tuple[dict, ...]
    number: int
    count: int

    def __iter__(self):
        return iter(self.items)

    @property
    def pages(self) -> int:
        return max(1, -(-self.count // PER_PAGE))

    @property
    def start_index(self) -> int:
        return (self.number - 1) * PER_PAGE + 1 if self.items else 0

    @property
    def end_index(self) -> int:
        return (self.number - 1) * PER_PAGE + len(self.items)

    def has_other_pages(self) -> bool:
        return self.pages > 1

    def has_previous(self) -> bool:
        return self.number > 1

    def has_next(self) -> bool:
        return self.number < self.pages


def window(request: HttpRequest, number: int) -> Window:
    """One page of stored policies with the state and counters the daemon last wrote to the store
    (every 2 s, and at once when a state changes): only the page's rows are read and parsed, so a
    page of 10,000 policies costs what a page of 100 does."""
    from ..policy import views
    from ..policy.model import Policy
    from ..policy.store import effective

    store = context.store(request)
    count, found = store.window((number - 1) * PER_PAGE, number * PER_PAGE)
    if not found and number > 1:  # past the end (a page emptied since): the last page
        return window(request, max(1, -(-count // PER_PAGE)))
    statuses = store.statuses([item.id for item in found])
    items = [views.as_json(item, effective(item, statuses.get(item.id))) if isinstance(item, Policy)
             else views.invalid_json(item.id, item.router, item.name, item.fields, str(item.error))
             for item in found]
    return Window(tuple(items), number, count)


def index(request: HttpRequest) -> HttpResponse:
    try:
        number = max(1, int(request.GET.get("page") or 1))
    except ValueError:
        number = 1
    try:
        shown, problem = window(request, number), None
    except (DatabaseProblem, DatabaseError) as exc:
        shown, problem = Window((), 1, 0), f"the policy store cannot be read: {exc}"
    template = "web/policies_table.html" if request.GET.get("part") else "web/policies.html"
    return render(request, template, {"policies": shown, "problem": problem, "page": "policies",
                                      "number": shown.number})


def _form_page(request: HttpRequest, form: PolicyForm, title: str) -> HttpResponse:
    return render(request, "web/policy_form.html", {"form": form, "title": title, "page": "policies"},
                  status=400 if form.is_bound and form.errors else 200)


@operator
def add(request: HttpRequest) -> HttpResponse:
    form = PolicyForm(request.POST or None, routers=context.routers(), initial={"enabled": True})
    if request.method == "POST" and form.is_valid():
        from ..policy.model import parse

        data = form.cleaned_data
        fields = {k: v for k, v in form.changes().items() if v not in ("", None)}
        store = context.store(request)
        try:
            policy = store.add(parse(data["router"], data["name"], fields))
        except PolicyError as exc:
            form.refused(exc)
        else:
            messages.success(request, f"router {policy.router}: added policy {policy.name}")
            _notify(request, store, policy.router, [policy.name])
            return redirect("policies")
    return _form_page(request, form, "Add a policy")


def _get(store, router: str, name: str):
    try:
        return store.get(router, name)
    except PolicyError:
        raise Http404(f"router {router} has no policy {name!r}") from None


@operator
def edit(request: HttpRequest, router: str, name: str) -> HttpResponse:
    store = context.store(request)
    policy = _get(store, router, name)
    form = PolicyForm(request.POST or None, routers=context.routers(), editing=True, initial=initial(policy))
    if request.method == "POST" and form.is_valid():
        try:
            outcome = store.update(router, name, form.changes())
        except PolicyError as exc:
            form.refused(exc)
        else:
            if outcome.changed:
                messages.success(request, f"router {router}: changed policy {name}")
                _notify(request, store, router, [name])
            else:
                messages.info(request, f"router {router}: policy {name} unchanged")
            return redirect("policies")
    return _form_page(request, form, f"Edit {router}/{name}")


@require_POST
@operator
def turn(request: HttpRequest, router: str, name: str, verb: str) -> HttpResponse:
    store = context.store(request)
    try:
        if verb == "delete":
            store.delete(router, name)
            changed, done = True, "deleted"
        else:
            outcome = (store.enable if verb == "enable" else store.disable)(router, name)
            changed, done = outcome.changed, f"{verb}d"
    except PolicyError as exc:
        messages.error(request, str(exc))
        return redirect("policies")
    if changed:
        messages.success(request, f"router {router}: {done} policy {name}")
        _notify(request, store, router, [name])
    else:
        messages.info(request, f"router {router}: policy {name} was {verb}d already")
    return redirect("policies")


def export(request: HttpRequest) -> HttpResponse:
    text = context.store(request).export(request.GET.get("router") or None)
    response = HttpResponse(text, content_type="application/yaml; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="policies.yaml"'
    return response


@operator
def import_(request: HttpRequest) -> HttpResponse:
    result, error = None, None
    if request.method == "POST":
        upload = request.FILES.get("file")
        dry_run = bool(request.POST.get("dry_run"))
        if upload is None:
            error = "file: choose a file from policy export"
        else:
            store = context.store(request)
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "policies.yaml"
                path.write_bytes(upload.read())
                try:
                    result = store.import_file(path, dry_run=dry_run)
                except PolicyError as exc:
                    error = str(exc).replace(str(path), upload.name)
            if result is not None and not dry_run:
                changed = list(result.names().items())
                for i, (router, names) in enumerate(changed):
                    commands.notify(context.config(), router, names,
                                    store.last_write if i == len(changed) - 1 else None,
                                    report=lambda line: messages.warning(request, line))
        if result is not None:
            verbs = ("would add", "would change", "would delete") if dry_run else ("added", "changed", "deleted")
            counts = (len(result.adds), len(result.changes), len(result.deletes))
            messages.success(request, "import: " + ", ".join(f"{n} {v}" for n, v in zip(counts, verbs)))
            if not dry_run:
                return redirect("policies")
    return render(request, "web/policy_import.html", {"error": error, "result": result, "page": "policies"},
                  status=400 if error else 200)
