"""A port's VLAN TAPs in the bridge (TapSet) and in a reload's diff: one TAP per (port, VLAN), all with
the port's MAC and its carrier, added and removed one at a time.

The kernel side (bridge.tap) is recorded rather than done: what is under test is which TAPs the
TapSet asks for, and with what; real TAPs follow a real port in netns_tests (the VLAN lab)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from taprouter import config, reconfig
from taprouter.bridge import taps as taps_mod
from taprouter.bridge.ports import PortState, SwitchPort
from taprouter.bridge.taps import TapSet

DATA = {"routers": {"r1": {"dpid": 1, "ports": {
    1: {"tap": "r1-p1", "addresses": ["10.0.1.1/24"],
        "vlans": {100: {"tap": "r1-p1.100", "addresses": ["10.100.0.1/24"]}, 200: {"tap": "r1-p1.200"}}},
    2: {"vlans": {300: {"tap": "r1-p2.300"}}},
}}}}


def parse(data: dict) -> config.Config:
    return config.parse(data, Path("/nonexistent/taprouter.yaml"))


class Holder:
    def __init__(self) -> None:
        self.held: dict[str, int] = {}

    def put(self, name: str, fd: int) -> None:
        self.held[name] = fd

    def drop(self, name: str) -> None:
        self.held.pop(name, None)


class Kernel:
    """What TapSet asked of bridge.tap: TAPs opened, carrier set per descriptor, MAC and addresses given."""

    def __init__(self) -> None:
        self.fds: dict[str, int] = {}
        self.carrier: dict[int, bool] = {}
        self.configured: dict[str, tuple[str, tuple]] = {}

    def open_tap(self, netns: str, name: str) -> int:
        fd = self.fds.setdefault(name, 100 + len(self.fds))
        return fd

    def set_carrier(self, fd: int, up: bool) -> None:
        self.carrier[fd] = up

    def configure(self, netns: str, name: str, mac: str, addresses):
        self.configured[name] = (mac, tuple(addresses))

        class Link:
            mtu = 1500
        return Link()


class RecordingRelay:
    """The relay's table of descriptors (Relay's add, fd and remove), without its thread, epoll or the
    closing of descriptors that are not real."""

    def __init__(self) -> None:
        self.taps: dict[SwitchPort, tuple[str, int]] = {}

    def add(self, port, name, fd, mtu):
        self.taps[port] = (name, fd)

    def fd(self, port):
        found = self.taps.get(port)
        return found[1] if found else None

    def remove(self, port):
        return self.taps.pop(port, None) is not None


@pytest.fixture
def kernel(monkeypatch) -> Kernel:
    k = Kernel()
    for name in ("open_tap", "set_carrier", "configure"):
        monkeypatch.setattr(taps_mod.tap, name, getattr(k, name))
    monkeypatch.setattr(taps_mod.tap, "delete", lambda netns, name: True)
    return k


def test_every_tap_of_a_port_opens_with_its_mac_and_follows_its_carrier(kernel):
    relay = RecordingRelay()
    taps = TapSet(parse(DATA).routers[0], Holder(), relay)
    taps.port_ready(PortState(1, "0e:00:00:00:00:01", True))
    assert {p: name for p, (name, _) in relay.taps.items()} == {
        SwitchPort(1, 1, 0): "r1-p1", SwitchPort(1, 1, 100): "r1-p1.100", SwitchPort(1, 1, 200): "r1-p1.200"}
    assert kernel.configured["r1-p1.100"] == ("0e:00:00:00:00:01", (ipaddress.ip_interface("10.100.0.1/24"),))
    assert {mac for mac, _ in kernel.configured.values()} == {"0e:00:00:00:00:01"}
    assert all(kernel.carrier[kernel.fds[n]] for n in ("r1-p1", "r1-p1.100", "r1-p1.200"))
    taps.port_ready(PortState(1, "0e:00:00:00:00:01", False))  # the port goes down: every TAP on it
    assert not any(kernel.carrier[kernel.fds[n]] for n in ("r1-p1", "r1-p1.100", "r1-p1.200"))
    taps.port_ready(PortState(2, "0e:00:00:00:00:02", True))  # a VLAN-only port: its VLAN's TAP alone
    assert SwitchPort(1, 2, 0) not in relay.taps and relay.taps[SwitchPort(1, 2, 300)][0] == "r1-p2.300"
    assert sorted(taps.carrier_off()) == ["r1-p1", "r1-p1.100", "r1-p1.200", "r1-p2.300"]
    assert taps.port_of("r1-p1.200").vid == 200 and taps.port_of("r1-p1").vid == 0


def test_a_reload_adds_and_removes_vlan_taps_one_at_a_time(kernel):
    old = parse(DATA)
    data = {"routers": {"r1": {"dpid": 1, "ports": {
        1: {"tap": "r1-p1", "addresses": ["10.0.1.1/24"],
            "vlans": {100: {"tap": "r1-p1.100", "addresses": ["10.100.0.9/24"]}, 201: {"tap": "r1-p1.201"}}},
        2: {"vlans": {300: {"tap": "r1-p2.300"}}},
    }}}}
    change = reconfig.diff(old, parse(data))
    (r1,) = change.routers
    assert r1.summary() == ["router r1: port 1 VLAN 201 (r1-p1.201) added",
                            "router r1: port 1 VLAN 200 (r1-p1.200) removed",
                            "router r1: port 1 VLAN 100 (r1-p1.100) addresses +10.100.0.9/24, -10.100.0.1/24"]
    relay = RecordingRelay()
    holder = Holder()
    taps = TapSet(old.routers[0], holder, relay)
    taps.port_ready(PortState(1, "0e:00:00:00:00:01", True))
    taps.update(r1.config)
    for gone in r1.removed:
        taps.remove(gone)
    taps.port_ready(PortState(1, "0e:00:00:00:00:01", True))
    assert sorted(name for name, _ in relay.taps.values()) == ["r1-p1", "r1-p1.100", "r1-p1.201"]
    assert "r1-p1.200" not in holder.held and "r1-p1.201" in holder.held
