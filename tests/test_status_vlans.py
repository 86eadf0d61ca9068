"""`taprouter status` with VLANs: each VLAN's TAP under its port, and the counted ingress drops."""

from __future__ import annotations

from pathlib import Path

from fakedaemon import router_status
from taprouter import status
from taprouter.config import PortConfig, VlanConfig


def _vlan(vid: int, present: bool = True) -> dict:
    return {"vid": vid, "tap": f"r1-p1.{vid}", "present": present, "mac": "02:00:00:00:00:01" if present else None,
            "carrier": present, "up": present, "addresses": [f"10.{vid % 256}.0.1/24"] if present else [],
            "counters": None}


def test_vlan_taps_are_listed_under_their_port_and_drops_after_the_ports():
    entry = router_status("r1", ports=2)
    entry["ports"][0]["vlans"] = [_vlan(100), _vlan(200, present=False)]
    entry["ports"][1].update(tap=None, present=False, vlans=[_vlan(300)])
    entry["ingress_drops"] = [{"port": 1, "reason": "unknown_vlan", "packets": 3},
                              {"port": 1, "reason": "double_tagged", "packets": 0}]
    entry.update(problems=[], healthy=True, status_file=None)
    lines = status.to_text(status.Report(Path("/x.sock"), [entry], None)).splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("  port 1:"))
    assert lines[at + 1] == "    VLAN 100: r1-p1.100 02:00:00:00:00:01 UP, carrier 10.100.0.1/24"
    assert lines[at + 2] == "    VLAN 200: r1-p1.200 missing"
    assert lines[at + 3] == "  port 2: VLANs only"
    assert lines[at + 4] == "    VLAN 300: r1-p1.300 02:00:00:00:00:01 UP, carrier 10.44.0.1/24"
    assert "  ingress drops: port 1 unknown_vlan 3" in lines


def test_from_host_lists_vlans_of_a_router_without_a_daemon(tmp_path):
    port = PortConfig(1, None, (), (VlanConfig(100, "zz-none.100", ()),))
    got = status._port("no-such-netns-here", False, port)  # noqa: SLF001 - the layout itself is the subject
    assert got["tap"] is None and got["present"] is False
    assert got["vlans"] == [{"vid": 100, "tap": "zz-none.100", "present": False, "mac": None, "carrier": False,
                             "up": False, "addresses": [], "counters": None}]
