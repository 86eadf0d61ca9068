"""A router with a VLAN trunk and an untagged port: routing between VLANs, and OSPF on one of them."""

import shutil
import subprocess
import sys
from pathlib import Path

from taprouter.labkit.build import leftovers
from taprouter.labkit.plan import default_prefix

HERE = Path(__file__).resolve().parent


def test_hosts_on_two_vlans_and_an_untagged_port_reach_each_other_and_the_peer(taprouter_lab):
    lab = taprouter_lab("vlans.yaml")
    # Router on a stick: VLAN 100 to VLAN 200 of the same port, and each VLAN to the untagged port.
    for a, b in (("h100", "h200"), ("h200", "h2"), ("h2", "h100")):
        assert lab.ping(a, b).loss == 0, (a, b)
    # OSPF runs on VLAN 100 only: one neighbour each, on that VLAN's TAP.
    assert lab.plan.ospf_expected() == {"r1": 1, "core": 1}
    neighbours = lab.bird("r1", "show ospf neighbors")
    assert "198.51.100.1" in neighbours and "eth1.100" in neighbours, neighbours
    # The peer's stub route, learned over VLAN 100, is in r1's kernel and forwarded by its switch.
    # (Convergence waits for the neighbours on a LAN, not for the routes their LSAs carry.)
    lab.wait_until(lambda: "198.51.100.1/32" in lab.routes("r1").kernel, timeout=15)
    assert lab.routes("r1").kernel["198.51.100.1/32"] == ("10.100.0.3",)
    assert lab.routes("r1").switch["198.51.100.1/32"].group is not None
    for host in ("h200", "h2"):
        assert lab.ping(host, "198.51.100.1").loss == 0, host
    # The peer's link down: VLAN 100 stays up for h100, and r1 expects no OSPF neighbour.
    lab.link_down("r1", "core")
    assert lab.plan.ospf_expected(frozenset(lab.links_down)) == {"r1": 0, "core": 0}
    lab.wait_until(lambda: "198.51.100.1/32" not in lab.routes("r1").kernel, timeout=15)
    lab.wait_converged()
    assert lab.ping("h100", "h200").loss == 0


def test_lab_up_status_and_down_from_the_command_line(tmp_path):
    copy = tmp_path / "vlans"
    shutil.copytree(HERE, copy, ignore=shutil.ignore_patterns("test_*", "__pycache__"))
    path = copy / "vlans.yaml"

    def lab(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "taprouter.cli", "lab", *args, str(path)],
                              capture_output=True, text=True, timeout=180)

    try:
        up = lab("up")
        assert up.returncode == 0, up.stdout + up.stderr
        assert "10.100.0.1/24 10.200.0.1/24 10.2.0.1/24" in up.stdout, up.stdout  # r1's, VLANs included
        status = lab("status")
        assert status.returncode == 0 and "converged" in status.stdout, status.stdout + status.stderr
    finally:
        down = lab("down")
    assert down.returncode == 0 and "lab removed" in down.stdout, down.stdout + down.stderr
    assert leftovers(default_prefix(path)) == []  # the access switch and its trunk too
