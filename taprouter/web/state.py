"""The pages that show the daemon's state, read from its control socket: Overview, Devices,
Routing (BIRD in its own words, kernel routes searched by prefix a page at a time, and an
address's longest match), and the BIRD reload button."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from . import context, daemon
from .roles import OPERATE

PER_PAGE = 50
ROUTES_PER_PAGE = 50


def _live(request: HttpRequest, page: str, whole: str, part: str, extra: dict | None = None) -> HttpResponse:
    """The page, or (?part=1, what the page polls) only its live part."""
    answer = daemon.status(context.socket())
    values = {"status": answer.data, "problem": answer.error, "page": page, **(extra or {})}
    return render(request, part if request.GET.get("part") else whole, values)


def overview(request: HttpRequest) -> HttpResponse:
    return _live(request, "overview", "web/overview.html", "web/overview_live.html")


def devices(request: HttpRequest) -> HttpResponse:
    return _live(request, "devices", "web/devices.html", "web/devices_live.html")


def _protocols(status: dict | None) -> list[dict]:
    found = []
    for router in (status or {}).get("routers", []):
        bird = router.get("bird") or {}
        for protocol in bird.get("protocols", []):
            found.append({"router": router["router"], **protocol})
    return found


def routing(request: HttpRequest) -> HttpResponse:
    answer = daemon.status(context.socket())
    pages = Paginator(_protocols(answer.data), PER_PAGE)
    values = {"status": answer.data, "problem": answer.error, "page": "routing",
              "protocols": pages.get_page(request.GET.get("page")), "routers": context.routers()}
    router, address = request.GET.get("router", ""), request.GET.get("address", "").strip()
    if "prefix" in request.GET:
        values.update(_route_search(request))
    if address:
        values.update(router=router, address=address)
        try:
            ipaddress.ip_address(address)
        except ValueError:
            values["lookup_error"] = f"address: {address!r} is not an IPv4 or IPv6 address"
        else:
            found = daemon.lookup(context.socket(), router, address)
            values.update(lookup=found.data, lookup_error=found.error)
    return render(request, "web/routing.html", values)


def _route_search(request: HttpRequest) -> dict:
    """The route search: the daemon pages on its side (a full table is a million routes); the page
    carries the cursor forward, and the cursors it came through back, in the query."""
    router = request.GET.get("router", "")
    text, after = request.GET.get("prefix", "").strip(), request.GET.get("after", "").strip()
    values = {"routes_router": router, "routes_prefix": text}
    try:
        within = str(ipaddress.ip_network(text, strict=False)) if text else None
        if after:
            ipaddress.ip_network(after)
    except ValueError:
        values["routes_error"] = f"prefix: {text!r} is not an IPv4 or IPv6 prefix"
        return values
    found = daemon.routes(context.socket(), router, within, after or None, ROUTES_PER_PAGE)
    back = [c for c in request.GET.get("back", "").split(",") if c]  # "-": the first page
    base = {"router": router, "prefix": text}
    values.update(routes=found.data, routes_error=found.error)
    if found.data and found.data.get("next"):
        values["routes_next"] = urlencode({**base, "after": found.data["next"], "back": ",".join(back + [after or "-"])})
    if back:
        values["routes_previous"] = urlencode({**base, "after": "" if back[-1] == "-" else back[-1],
                                               "back": ",".join(back[:-1])})
    return values


@require_POST
@permission_required(OPERATE, raise_exception=True)
def reload_bird(request: HttpRequest) -> HttpResponse:
    answer = daemon.reload_bird(context.socket(), request.POST.get("router") or None)
    if answer.error:
        messages.error(request, f"BIRD not reloaded: {answer.error}")
    else:
        for result in answer.data["results"]:
            say = messages.success if result["reloaded"] else messages.error
            say(request, f"router {result['router']}: {result['message']}")
    return redirect("routing")
