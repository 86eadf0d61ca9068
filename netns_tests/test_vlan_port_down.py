"""A trunk's link going down takes every TAP on that port down, untagged and VLAN alike, and only
those; when it comes back, so does every VLAN on it."""

from __future__ import annotations

import subprocess

import pytest

import vlanlab
from vlanlab import VLANS


@pytest.fixture
def lab(request, tmp_path, ovs):
    yield from vlanlab.vlan_lab(request, tmp_path)


def port1_taps(lab) -> list[str]:
    return [lab.taps[1]] + [lab.vlan_taps[vid] for vid, net in VLANS.items() if net.port == 1]


def others(lab) -> list[str]:
    return [lab.taps[3]] + [lab.vlan_taps[vid] for vid, net in VLANS.items() if net.port != 1]


def status_carrier(lab) -> dict[int, bool]:
    """VLAN id -> carrier, as `taprouter status --json` lists the VLAN TAPs under their ports."""
    return {v["vid"]: v["carrier"] for port in lab.status()["ports"] for v in port.get("vlans") or []}


def test_trunk_down_takes_every_vlan_tap_on_it_down(lab):
    for vid in (100, 200, 300):
        lab.assert_ping(lab.vhost(vid), VLANS[vid].router(4), count=2)
    assert all(lab.carrier(tap) for tap in port1_taps(lab) + others(lab))

    veth = lab.lab.switch_veth(1)
    mark = lab.log_path.stat().st_size
    subprocess.run(["ip", "link", "set", veth, "down"], check=True)
    lab.wait_log(r"port 1 down", since=mark)
    lab.wait_until(lambda: not any(lab.carrier(tap) for tap in port1_taps(lab)), timeout=10,
                   message=lambda: f"carrier of port 1's TAPs: {[(t, lab.carrier(t)) for t in port1_taps(lab)]}")
    assert all(lab.carrier(tap) for tap in others(lab)), \
        f"TAPs of other ports lost carrier: {[(t, lab.carrier(t)) for t in others(lab)]}"
    assert status_carrier(lab) == {100: False, 200: False, 300: True}, lab.status()["ports"]
    for vid in (100, 200):
        routes = lab.in_router("ip", "route", "show", "dev", lab.vlan_taps[vid]).stdout
        assert "linkdown" in routes, f"VLAN {vid}'s routes are not linkdown: {routes}"
    lab.assert_ping(lab.vhost(300), "10.0.3.2", count=2)  # the rest routes on

    mark = lab.log_path.stat().st_size
    subprocess.run(["ip", "link", "set", veth, "up"], check=True)
    lab.wait_log(r"port 1 up", since=mark)
    lab.wait_until(lambda: all(lab.carrier(tap) for tap in port1_taps(lab)), timeout=10,
                   message=lambda: f"carrier of port 1's TAPs: {[(t, lab.carrier(t)) for t in port1_taps(lab)]}")
    assert status_carrier(lab) == {100: True, 200: True, 300: True}, lab.status()["ports"]
    for vid in (100, 200):
        lab.assert_ping(lab.vhost(vid), VLANS[vid].router(4), count=3)
        lab.assert_ping(lab.vhost(vid), VLANS[300].host_address(4), count=3)
