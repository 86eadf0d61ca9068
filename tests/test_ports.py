"""The switch port <-> TAP mapping, both directions, across several routers."""

from __future__ import annotations

from pathlib import Path

import pytest

from taprouter import config
from taprouter.bridge.ports import PortMap, SwitchPort, TapPort, router_ports

# Two routers reuse the TAP name "p1", each in its own netns; r3 has a 64-bit dpid and big port numbers.
DATA = {
    "routers": {
        "r1": {"dpid": 1, "ports": {1: {"tap": "p1"}, 2: {"tap": "r1-p2"}, 7: {"tap": "r1-p7"}}},
        "r2": {"dpid": "0x2", "netns": "ns-two", "ports": {1: {"tap": "p1"}, 2: {"tap": "r2-p2"}}},
        "r3": {"dpid": "0xffffffffffffffff", "ports": {4294967039: {"tap": "r3-max"}, 3: {"tap": "r3-p3"}}},
    },
}

EXPECTED = [
    TapPort("r1", "r1", SwitchPort(1, 1), "p1"),
    TapPort("r1", "r1", SwitchPort(1, 2), "r1-p2"),
    TapPort("r1", "r1", SwitchPort(1, 7), "r1-p7"),
    TapPort("r2", "ns-two", SwitchPort(2, 1), "p1"),
    TapPort("r2", "ns-two", SwitchPort(2, 2), "r2-p2"),
    TapPort("r3", "r3", SwitchPort((1 << 64) - 1, 3), "r3-p3"),
    TapPort("r3", "r3", SwitchPort((1 << 64) - 1, 4294967039), "r3-max"),
]


@pytest.fixture(scope="module")
def portmap() -> PortMap:
    return PortMap(config.parse(DATA, Path("/nonexistent/taprouter.yaml")))


@pytest.mark.parametrize("entry", EXPECTED, ids=lambda e: f"{e.router}-{e.switch_port.port}")
def test_by_port(portmap, entry):
    assert portmap.by_port(entry.switch_port.dpid, entry.switch_port.port) == entry


@pytest.mark.parametrize("entry", EXPECTED, ids=lambda e: f"{e.netns}-{e.tap}")
def test_by_tap(portmap, entry):
    assert portmap.by_tap(entry.netns, entry.tap) == entry


def test_both_directions_agree(portmap):
    for entry in EXPECTED:
        found = portmap.by_port(entry.switch_port.dpid, entry.switch_port.port)
        assert portmap.by_tap(found.netns, found.tap) == found


def test_length_counts_every_port(portmap):
    assert len(portmap) == len(EXPECTED)


def test_same_tap_name_in_two_netns_is_two_ports(portmap):
    assert portmap.by_tap("r1", "p1").switch_port == SwitchPort(1, 1)
    assert portmap.by_tap("ns-two", "p1").switch_port == SwitchPort(2, 1)


@pytest.mark.parametrize("dpid,port", [
    (1, 3),  # unconfigured port on a known switch
    (1, 0),
    (3, 1),  # unknown switch
    (0, 1),
    (2, 7),  # a port number only another router has
    ((1 << 64) - 1, 1),
    (1, 0xFFFFFFFD),  # OFPP_CONTROLLER
])
def test_unknown_port_is_none(portmap, dpid, port):
    assert portmap.by_port(dpid, port) is None


@pytest.mark.parametrize("netns,tap", [
    ("r1", "r2-p2"),  # a TAP of another router, looked up in the wrong netns
    ("r2", "p1"),  # router r2's netns is ns-two, not its name
    ("ns-two", "r1-p2"),
    ("r1", "nope"),
    ("nope", "p1"),
    ("r1", ""),
])
def test_unknown_tap_is_none(portmap, netns, tap):
    assert portmap.by_tap(netns, tap) is None


def test_router_ports_follow_config_order():
    router = config.parse(DATA, Path("/x/c.yaml")).routers[0]
    assert router_ports(router) == EXPECTED[:3]


def test_empty_config_maps_nothing():
    empty = config.Config(Path("/x/c.yaml"), config.Listen("127.0.0.1", 6653), ())
    portmap = PortMap(empty)
    assert len(portmap) == 0
    assert portmap.by_port(1, 1) is None
    assert portmap.by_tap("r1", "p1") is None
