"""A FRR peer in a lab: the edge example with isp2 running FRR's bgpd instead of BIRD."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

EDGE = Path(__file__).resolve().parent.parent / "examples" / "labs" / "edge"
ISP2_FRR = """\
frr defaults traditional
hostname isp2
ip route 0.0.0.0/0 Null0
router bgp 64502
 bgp router-id 198.51.100.2
 no bgp ebgp-requires-policy
 neighbor 198.51.100.1 remote-as 65000
 neighbor 198.51.100.1 timers 2 6
 neighbor 198.51.100.1 timers connect 1
 address-family ipv4 unicast
  network 0.0.0.0/0
 exit-address-family
exit
"""

pytestmark = pytest.mark.skipif(shutil.which("vtysh") is None, reason="FRR is not installed (Debian package frr)")


@pytest.fixture
def edge_with_frr(tmp_path):
    copy = tmp_path / "edge"
    shutil.copytree(EDGE, copy, ignore=shutil.ignore_patterns("test_*", "__pycache__"))
    (copy / "isp2-frr.conf").write_text(ISP2_FRR)
    path = copy / "edge.yaml"
    path.write_text(path.read_text().replace("isp2: {config: isp2.conf,", "isp2: {daemon: frr, config: isp2-frr.conf,"))
    return path


def test_the_default_route_fails_over_to_a_frr_upstream(taprouter_lab, edge_with_frr):
    lab = taprouter_lab(edge_with_frr)
    assert '"state":"Established"' in lab.vtysh("isp2", "show bgp summary json").replace(" ", "")
    assert lab.routes("edge").kernel["0.0.0.0/0"] == ("192.0.2.2",)
    lab.link_down("edge", "isp1")
    lab.wait_until(lambda: lab.routes("edge").kernel.get("0.0.0.0/0") == ("198.51.100.2",), timeout=15)
    lab.wait_until(lambda: lab.ping("pc", "203.0.113.1", count=1).loss == 0, timeout=5)  # traffic follows
    lab.kill("isp2")
    # FRR offers graceful restart, so BIRD keeps its routes (stale) while the session is down.
    lab.wait_until(lambda: "Active" in lab.bird("edge", "show protocols isp2"), timeout=15)
    assert lab.routes("edge").kernel.get("0.0.0.0/0") == ("198.51.100.2",)
    lab.restart("isp2")
    lab.wait_converged()  # the session is Established; its routes follow once FRR has its static route
    lab.wait_until(lambda: lab.routes("edge").kernel.get("0.0.0.0/0") == ("198.51.100.2",), timeout=15)
    lab.wait_until(lambda: lab.ping("pc", "203.0.113.1", count=1).loss == 0, timeout=5)  # traffic follows


def test_a_frr_config_frr_refuses_is_named(edge_with_frr):
    from taprouter.labkit import topology
    (edge_with_frr.parent / "isp2-frr.conf").write_text(ISP2_FRR.replace("remote-as", "remote-az"))
    (problem,) = topology.refusals(topology.load(edge_with_frr))
    assert problem.startswith(f"{edge_with_frr}: peers.isp2.config: FRR refuses ") and "remote-az" in problem


OSPF_LAB = {
    "lab.yaml": """\
routers:
  r1: {bird: r1.conf, ports: {1: [10.7.0.1/30], 2: [10.8.0.1/24]}}
hosts:
  h1: {addresses: [10.8.0.2/24], gateway: 10.8.0.1}
peers:
  core: {daemon: frr, config: core.conf, addresses: [10.7.0.2/30], loopback: [10.99.0.1/32]}
links:
  - [r1:1, core]
  - [r1:2, h1]
""",
    "r1.conf": """\
router id 10.7.0.1;
protocol device {}
protocol kernel { ipv4 { import none; export filter { if source = RTS_DEVICE then reject; accept; }; }; }
protocol ospf v2 {
  ipv4 { import all; export none; };
  area 0 {
    interface "eth1" { type ptp; hello 1; dead 4; };
    interface "eth2" { stub; };
  };
}
""",
    "core.conf": """\
frr defaults traditional
hostname core
interface eth0
 ip ospf network point-to-point
 ip ospf hello-interval 1
 ip ospf dead-interval 4
exit
router ospf
 ospf router-id 10.7.0.2
 network 10.7.0.0/30 area 0
 network 10.99.0.1/32 area 0
exit
""",
}


def test_a_frr_ospf_neighbour_is_waited_for_until_its_routes_are_in(taprouter_lab, tmp_path):
    for name, text in OSPF_LAB.items():
        (tmp_path / name).write_text(text)
    lab = taprouter_lab(tmp_path / "lab.yaml")
    assert "Full" in lab.vtysh("core", "show ip ospf neighbor")
    assert lab.routes("r1").kernel["10.99.0.1/32"] == ("10.7.0.2",)
    assert lab.ping("h1", "10.99.0.1").loss == 0  # right after up: the lab waited for core's LSA
