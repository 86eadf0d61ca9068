"""The taprouter_lab fixture's helpers on the triangle example: BIRD's answers, a peer and a
router killed and restarted, the lab converging again each time."""

from __future__ import annotations

from pathlib import Path

import pytest

from taprouter.labkit.converge import NotConverged
from taprouter.labkit.running import LabError

TRIANGLE = Path(__file__).resolve().parent.parent / "examples" / "labs" / "triangle" / "triangle.yaml"


def test_a_killed_peer_and_a_killed_router_come_back(taprouter_lab):
    lab = taprouter_lab(TRIANGLE)
    assert "198.51.100.0/24" in lab.bird("r1", "show route")
    assert "Established" in lab.bird("r3", "show protocols isp")
    lab.kill("isp")
    lab.wait_until(lambda: "198.51.100.0/24" not in lab.routes("r1").kernel, timeout=20,
                   message="the upstream's prefix withdrawn once its BIRD died (hold time 6 s)")
    assert lab.ping("h1", "198.51.100.1", count=1).loss == 1.0
    lab.restart("isp")
    lab.wait_converged()
    assert lab.ping("h1", "198.51.100.1").loss == 0

    lab.kill("r2")
    with pytest.raises(LabError):
        lab.bird("r2", "show status")
    lab.wait_converged()  # r1 and r3 without r2: their adjacencies to it gone from every database
    assert lab.routes("r1").kernel["10.3.0.0/24"] == ("10.0.13.2",)
    lab.restart("r2")
    lab.wait_converged()
    assert lab.routes("r1").kernel["10.2.0.0/24"] == ("10.0.12.2", "10.0.13.2")
    assert lab.ping("h3", "h2").loss == 0


def test_a_lab_that_cannot_converge_says_what_is_missing(taprouter_lab):
    lab = taprouter_lab(TRIANGLE)
    lab.link_down("r3", "isp")
    lab.links_down.clear()  # as if the test forgot it took the link down: the session is awaited
    with pytest.raises(NotConverged, match=r"r3: BGP isp is \w+"):
        lab.wait_converged(timeout=8)
