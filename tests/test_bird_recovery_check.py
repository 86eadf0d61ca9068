"""Whether BIRD must start in graceful restart recovery: the kernel's first `proto bird` route says
so, without waiting for `ip` to list a full table (seconds at a million routes, before BIRD can
start again)."""

from __future__ import annotations

import time

import pytest

from taprouter.routing import bird


def stand_in(tmp_path, script: str) -> str:
    path = tmp_path / "ip"
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)
    return str(path)


def test_the_first_route_answers_without_the_rest_of_the_listing(tmp_path, monkeypatch):
    # A route, then an `ip` still listing the rest of a big table.
    monkeypatch.setattr(bird, "IP", stand_in(tmp_path, "echo '20.0.0.0/24 via 10.0.3.2 proto bird'\nexec sleep 20\n"))
    started = time.monotonic()
    assert bird.has_kernel_routes("r1") is True
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("output", ["", "\n"])
def test_no_bird_route_in_either_family(tmp_path, monkeypatch, output):
    monkeypatch.setattr(bird, "IP", stand_in(tmp_path, f"printf '{output}'\n"))
    assert bird.has_kernel_routes("r1") is False


def test_the_family_is_asked_for(tmp_path, monkeypatch):
    # Only the IPv6 listing holds a route.
    monkeypatch.setattr(bird, "IP", stand_in(tmp_path, 'if [ "$3" = "-6" ]; then echo "2001:db8::/48 proto bird"; fi\n'))
    assert bird.has_kernel_routes("r1") is True
