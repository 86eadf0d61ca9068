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
