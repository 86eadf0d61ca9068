"""`taprouter reload` with VLANs: removing a VLAN from the file takes its TAP and flows away while
traffic between the other VLANs loses nothing at 100 pps; adding it back brings the TAP back and
the VLAN's host reaches the router and across the router again."""

from __future__ import annotations

import subprocess
import time

import pytest

import vlanlab
from test_hitless_restart import ping_result
from vlanlab import VLANS

COUNT = 500
INTERVAL = 0.01  # 100 pps
VID = 200  # the VLAN the test removes and adds back
TAG = 0x1000 | VID


@pytest.fixture
def lab(request, tmp_path, ovs):
    yield from vlanlab.vlan_lab(request, tmp_path)


def reload(lab) -> subprocess.CompletedProcess:
    return lab.taprouter("reload", "-c", str(lab.config_path))


def vlan_flows(lab) -> list:
    return [f for f in lab.flows() if f.match.get("dl_vlan") == str(VID) or f"vlan_vid={TAG}" in f.line
            or f"{TAG}->vlan_vid" in f.actions or VLANS[VID].router(4) in f.line]


def reloaded_without_loss(lab) -> subprocess.CompletedProcess:
    """Reload while VLAN 100 pings VLAN 300; fails if a ping is lost."""
    ping = lab.vhost(100).popen("ping", "-n", "-q", "-i", str(INTERVAL), "-c", str(COUNT), "-W", "1",
                                VLANS[300].host_address(4), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    try:
        time.sleep(1)
        result = reload(lab)
        time.sleep(1.5)
        assert ping.poll() is None, "ping ended before the reload was done; the test proved nothing"
    finally:
        sent, received, out = ping_result(ping, timeout=COUNT * INTERVAL + 30)
    assert sent == COUNT and received == sent, f"{sent - received} of {sent} pings lost during the reload:\n{out}"
    return result


def test_reload_removes_and_adds_a_vlan(lab):
    lab.assert_ping(lab.vhost(100), VLANS[300].host_address(4), count=3)
    lab.assert_ping(lab.vhost(VID), VLANS[VID].router(4), count=3)
    assert vlan_flows(lab), f"no flows for VLAN {VID}:\n{lab.dump_flows()}"

    # -- out ------------------------------------------------------------------------------------
    removed = lab.vlans.pop(VID)
    lab.write_config()
    result = reloaded_without_loss(lab)
    print(result.stdout)
    lab.wait_until(lambda: not lab.vlan_tap_exists(VID), timeout=10,
                   message=f"{lab.vlan_taps[VID]} still in the router netns")
    lab.wait_until(lambda: not vlan_flows(lab), timeout=10,
                   message=lambda: f"flows of VLAN {VID} left:\n{lab.dump_flows()}")
    result = lab.ping(lab.vhost(VID), VLANS[VID].router(4), count=2, deadline=None)
    assert result.returncode != 0, f"VLAN {VID}'s host still reaches the router:\n{result.stdout}"

    # -- and back -------------------------------------------------------------------------------
    lab.vlans[VID] = removed
    lab.write_config()
    result = reloaded_without_loss(lab)
    print(result.stdout)
    lab.wait_until(lambda: lab.vlan_tap_exists(VID), timeout=10, message=f"{lab.vlan_taps[VID]} back")
    lab.wait_until(lab.punt_flows_installed, timeout=10, message=lambda: lab.dump_flows())
    for family in (4, 6):
        lab.assert_ping(lab.vhost(VID), VLANS[VID].router(family), count=3)
        lab.assert_ping(lab.vhost(VID), VLANS[100].host_address(family), count=3)
        lab.assert_ping(lab.host(3), VLANS[VID].host_address(family), count=3)
