"""A router's TAP <-> switch port mapping (TapSet), across several routers that reuse TAP names."""

from __future__ import annotations

from pathlib import Path

import pytest

from taprouter import config
from taprouter.bridge.taps import TapSet

# Two routers reuse the TAP name "p1", each in its own netns; r3 has a 64-bit dpid and big port numbers.
DATA = {
    "routers": {
        "r1": {"dpid": 1, "ports": {1: {"tap": "p1"}, 2: {"tap": "r1-p2"}, 7: {"tap": "r1-p7"}}},
        "r2": {"dpid": "0x2", "netns": "ns-two", "ports": {1: {"tap": "p1"}, 2: {"tap": "r2-p2"}}},
        "r3": {"dpid": "0xffffffffffffffff", "ports": {4294967039: {"tap": "r3-max"}, 3: {"tap": "r3-p3"}}},
    },
}

EXPECTED = [("r1", "p1", 1), ("r1", "r1-p2", 2), ("r1", "r1-p7", 7), ("r2", "p1", 1), ("r2", "r2-p2", 2),
            ("r3", "r3-p3", 3), ("r3", "r3-max", 4294967039)]


@pytest.fixture(scope="module")
def taps() -> dict[str, TapSet]:
    cfg = config.parse(DATA, Path("/nonexistent/taprouter.yaml"))
    # Nothing here opens a TAP or talks to a holder: the mapping is built from the config alone.
    return {r.name: TapSet(r, holder=None, relay=None) for r in cfg.routers}


@pytest.mark.parametrize("router,tap,port", EXPECTED, ids=lambda e: str(e))
def test_each_tap_maps_to_its_port(taps, router, tap, port):
    assert taps[router].port_of(tap).number == port


def test_the_same_tap_name_in_two_routers_is_two_ports(taps):
    assert taps["r1"].port_of("p1") is not taps["r2"].port_of("p1")
    assert taps["r1"].port_of("p1").tap == taps["r2"].port_of("p1").tap == "p1"


@pytest.mark.parametrize("router,tap", [("r1", "r2-p2"), ("r2", "r1-p2"), ("r1", "nope"), ("r3", "p1"), ("r1", "")])
def test_a_tap_of_another_router_or_none_is_unknown(taps, router, tap):
    assert taps[router].port_of(tap) is None
