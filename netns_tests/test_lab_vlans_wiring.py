"""VLANs in `taprouter lab`, wired every way the topology file allows: a VLAN on a switch's LAN,
two routers' VLANs joined, a port with an untagged side and a VLAN; and `lab down` after an `up`
killed halfway, whose access switch and trunk the journal named before they were made."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import textwrap
from pathlib import Path

import pytest

from routerlab import TAPROUTER, leftovers, wait_until
from taprouter.labkit.journal import Journal
from taprouter.labkit.plan import RUN_BASE, default_prefix

VLANS = Path(__file__).resolve().parent.parent / "examples" / "labs" / "vlans"


@pytest.fixture
def topology(tmp_path):
    copy = tmp_path / "vlans"
    shutil.copytree(VLANS, copy, ignore=shutil.ignore_patterns("test_*", "__pycache__"))
    path = copy / "vlans.yaml"
    yield path
    subprocess.run([str(TAPROUTER), "lab", "down", str(path)], capture_output=True, timeout=120)
    assert leftovers(default_prefix(path)) == []


def test_down_removes_the_access_switch_of_an_up_killed_halfway(topology):
    prefix = default_prefix(topology)
    journal = Journal(RUN_BASE / prefix / "state.jsonl")
    proc = subprocess.Popen([str(TAPROUTER), "lab", "up", str(topology)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        # Killed once the trunk (the last wire) is in the journal: it may or may not exist yet.
        wait_until(lambda: any(e.kind == "veth" and e.name == f"{prefix}k0a" for e in journal.entries()),
                   timeout=30, interval=0.01)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    bridges = {e.name for e in journal.entries() if e.kind == "bridge"}
    assert bridges == {f"{prefix}b0", f"{prefix}a0"}
    assert f"bridge {prefix}a0" in leftovers(prefix)
    down = subprocess.run([str(TAPROUTER), "lab", "down", str(topology)], capture_output=True, text=True,
                          timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
    assert leftovers(prefix) == []


WIRED = """
    name: wired
    routers:
      r1:
        bird: r1.conf
        ports:
          1: {vlans: {100: [10.100.0.1/24]}}
          2: {addresses: [10.2.0.1/24], vlans: {300: [10.30.0.1/30]}}
      r2:
        bird: r2.conf
        ports:
          1: {vlans: {300: [10.30.0.2/30]}}
          2: [10.22.0.1/24]
    hosts:
      h100: {addresses: [10.100.0.2/24], gateway: 10.100.0.1}
      h2: {addresses: [10.2.0.2/24], gateway: 10.2.0.1}
      h22: {addresses: [10.22.0.2/24], gateway: 10.22.0.1}
    peers:
      p: {config: p.conf, addresses: [10.100.0.3/24]}
    switches:
      lan: {}
    links:
      - [r1:1.100, lan]        # VLAN 100 is one LAN with the switch's
      - [lan, h100]
      - [lan, p]
      - [r1:2, h2]             # port 2's untagged side: the trunk's native VLAN
      - [r1:2.300, r2:1.300]   # two access switches, one VLAN between them
      - [r2:2, h22]
"""
ROUTER = """
    router id 10.255.0.{n};
    protocol device {{ scan time 10; }}
    protocol kernel {{ ipv4 {{ import none; export where source = RTS_OSPF; }}; }}
    protocol ospf v2 {{
      ipv4 {{ import all; export none; }};
      area 0 {{
        interface "eth1.100", "eth2.300", "eth1.300" {{ hello 1; dead 4; }};
        interface "eth2" {{ stub; }};
      }};
    }}
"""
PEER = """
    router id 10.255.0.9;
    protocol device { scan time 10; }
    protocol kernel { ipv4 { import none; export where source = RTS_OSPF; }; }
    protocol ospf v2 {
      ipv4 { import all; export none; };
      area 0 { interface "eth0" { hello 1; dead 4; }; stubnet 198.51.100.9/32; };
    }
"""


@pytest.fixture
def wired(tmp_path):
    path = tmp_path / "wired.yaml"
    path.write_text(textwrap.dedent(WIRED))
    for n in (1, 2):
        (tmp_path / f"r{n}.conf").write_text(textwrap.dedent(ROUTER.format(n=n)))
    (tmp_path / "p.conf").write_text(textwrap.dedent(PEER))
    yield path
    down = subprocess.run([str(TAPROUTER), "lab", "down", str(path)], capture_output=True, text=True, timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
    assert leftovers(default_prefix(path)) == []


def lab(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(TAPROUTER), "lab", *args], capture_output=True, text=True, timeout=timeout)


def test_vlans_on_a_switch_between_routers_and_beside_an_untagged_side_route(wired):
    up = lab("up", str(wired))
    assert up.returncode == 0, up.stdout + up.stderr
    # r1 meets p on VLAN 100 (through the switch) and r2 on VLAN 300 (through two access switches).
    ospf = lab("exec", "-f", str(wired), "r1", "--", "birdc", "-s",
               str(RUN_BASE / default_prefix(wired) / "routers" / "r1" / "r1" / "bird.ctl"), "show ospf neighbors")
    assert "10.255.0.9" in ospf.stdout and "10.255.0.2" in ospf.stdout, ospf.stdout
    for node, address in (("h2", "10.22.0.2"), ("h100", "10.22.0.2"), ("h22", "10.100.0.3"),
                          ("h22", "10.2.0.2")):
        ping = lab("exec", "-f", str(wired), node, "--", "ping", "-c", "3", "-i", "0.2", "-W", "1", address)
        assert ping.returncode == 0 and " 0% packet loss" in ping.stdout, (node, address, ping.stdout)
    status = lab("status", str(wired))
    assert status.returncode == 0 and "converged" in status.stdout, status.stdout
