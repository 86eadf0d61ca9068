"""An ExaBGP peer in a lab: the edge example with isp2 announcing its default route from ExaBGP."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from taprouter.labkit import topology

EDGE = Path(__file__).resolve().parent.parent / "examples" / "labs" / "edge"
ISP2_EXABGP = """\
neighbor 198.51.100.1 {
    router-id 198.51.100.2;
    local-address 198.51.100.2;
    local-as 64502;
    peer-as 65000;
    hold-time 6;
    family { ipv4 unicast; }
    static { route 0.0.0.0/0 next-hop self; }
}
"""

pytestmark = pytest.mark.skipif(topology.exabgp_command() is None, reason="ExaBGP is not installed")


@pytest.fixture
def edge_with_exabgp(tmp_path):
    copy = tmp_path / "edge"
    shutil.copytree(EDGE, copy, ignore=shutil.ignore_patterns("test_*", "__pycache__"))
    (copy / "isp2.exabgp").write_text(ISP2_EXABGP)
    path = copy / "edge.yaml"
    path.write_text(path.read_text().replace("isp2: {config: isp2.conf,", "isp2: {daemon: exabgp, config: isp2.exabgp,"))
    return path


def test_the_default_route_fails_over_to_an_exabgp_upstream(taprouter_lab, edge_with_exabgp):
    lab = taprouter_lab(edge_with_exabgp)
    assert "Established" in lab.bird("edge", "show protocols isp2")
    assert lab.routes("edge").kernel["0.0.0.0/0"] == ("192.0.2.2",)
    lab.link_down("edge", "isp1")
    lab.wait_until(lambda: lab.routes("edge").kernel.get("0.0.0.0/0") == ("198.51.100.2",), timeout=15)
    lab.kill("isp2")
    lab.wait_until(lambda: "0.0.0.0/0" not in lab.routes("edge").kernel, timeout=15)
    lab.restart("isp2")
    lab.wait_converged()
    lab.wait_until(lambda: lab.routes("edge").kernel.get("0.0.0.0/0") == ("198.51.100.2",), timeout=15)


def test_an_exabgp_config_exabgp_refuses_is_named(edge_with_exabgp):
    (edge_with_exabgp.parent / "isp2.exabgp").write_text(ISP2_EXABGP.replace("peer-as", "peer-az"))
    (problem,) = topology.refusals(topology.load(edge_with_exabgp))
    assert problem.startswith(f"{edge_with_exabgp}: peers.isp2.config: ExaBGP refuses ") and "peer-az" in problem
