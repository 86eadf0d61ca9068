"""VLANs in taprouter lab's topology file: a router port's `vlans:`, links to ROUTER:PORT.VID,
their refusals (file and key named), the access switch in the plan, OSPF counted per segment."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from taprouter.labkit import topology
from taprouter.labkit.plan import make

OSPF_CONF = 'router id 10.0.0.1;\nprotocol device {}\nprotocol ospf v2 { area 0 { interface "eth*"; }; }\n'

TRUNK = """
    routers:
      r1:
        bird: ospf.conf
        ports:
          1: {vlans: {100: [10.100.0.1/24], 200: {tap: blue, addresses: [10.200.0.1/24]}}}
          2: [10.2.0.1/24]
    hosts:
      h100: {addresses: [10.100.0.2/24], gateway: 10.100.0.1}
      h200: {addresses: [10.200.0.2/24], gateway: 10.200.0.1}
      h2: {addresses: [10.2.0.2/24], gateway: 10.2.0.1}
    peers:
      p1: {config: ospf.conf, addresses: [10.100.0.3/24]}
      p2: {config: ospf.conf, addresses: [10.100.0.4/24]}
      p3: {config: ospf.conf, addresses: [10.200.0.3/24]}
    links:
      - [r1:1.100, h100]
      - [r1:1.100, p1]
      - [r1:1.100, p2]
      - [r1:1.200, h200]
      - [p3, r1:1.200]
      - [r1:2, h2]
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "ospf.conf").write_text(OSPF_CONF)
    path = tmp_path / "lab.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(topology.TopologyError) as caught:
        topology.load(path)
    return caught.value.problems


def test_a_trunk_port_is_read_with_its_vlans_taps_and_links(tmp_path):
    topo = topology.load(write(tmp_path, TRUNK))
    port = topo.router("r1").port(1)
    assert port.tap is None and port.addresses == ()  # VLANs only: no untagged TAP
    assert [(v.vid, v.tap, [str(a) for a in v.addresses]) for v in port.vlans] == [
        (100, "eth1.100", ["10.100.0.1/24"]), (200, "blue", ["10.200.0.1/24"])]
    assert [str(a) for a in port.all_addresses] == ["10.100.0.1/24", "10.200.0.1/24"]
    # Several links share a VLAN: it is a LAN of the port's access switch.
    assert [(str(lk.a), str(lk.b)) for lk in topo.links][:3] == [
        ("r1:1.100", "h100:eth0"), ("r1:1.100", "p1:eth0"), ("r1:1.100", "p2:eth0")]
    assert topo.links[4].b.vlan == 200 and topo.links[5].a.vlan is None


def test_a_vlan_the_router_does_not_have_on_that_port_is_refused_with_file_and_key(tmp_path):
    path = write(tmp_path, TRUNK.replace("[r1:1.200, h200]", "[r1:1.300, h200]"))
    (problem,) = problems(path)
    assert problem == (f"{path}: links[3]: 'r1:1.300': router r1's port 1 has no VLAN 300 (its VLANs: 100, "
                       "200; see routers.r1.ports.1.vlans)")
    path = write(tmp_path, TRUNK.replace("[r1:2, h2]", "[r1:2.100, h2]"))
    (problem,) = problems(path)
    assert problem.startswith(f"{path}: links[5]: 'r1:2.100': router r1's port 2 has no VLAN 100 "
                              "(its VLANs: none")


def test_an_untagged_link_to_a_port_of_vlans_only_is_refused(tmp_path):
    path = write(tmp_path, TRUNK.replace("[r1:1.200, h200]", "[r1:1, h200]"))
    (problem,) = problems(path)
    assert problem == (f"{path}: links[3]: 'r1:1': router r1's port 1 carries VLANs only (100, 200): "
                       "link to r1:1.VID")


@pytest.mark.parametrize("endpoint", ["r1:1.", "r1:1.x", "r1:.100", "r1:3.100"])
def test_a_malformed_or_missing_port_is_refused(tmp_path, endpoint):
    path = write(tmp_path, TRUNK.replace("[r1:2, h2]", f"['{endpoint}', h2]"))
    (problem,) = problems(path)
    assert problem.startswith(f"{path}: links[5]: '{endpoint}': router r1 has no port"), problem


def test_bad_vlan_ids_taps_and_keys_are_each_named(tmp_path):
    path = write(tmp_path, TRUNK.replace(
        "1: {vlans: {100: [10.100.0.1/24], 200: {tap: blue, addresses: [10.200.0.1/24]}}}",
        "1: {vlans: {100: [10.100.0.1/24], 200: {tap: eth2, addresses: [10.200.0.1/24], pcp: 3}, "
        "0: [], 4095: [], x: [], 7: {tap: this-name-is-too-long}, 8: 10.8.0.1/24}}"))
    found = problems(path)
    key = f"{path}: routers.r1.ports.1.vlans"
    for expected in (f"{key}.0: a VLAN id is an integer in 1..4094",
                     f"{key}.4095: a VLAN id is an integer in 1..4094",
                     f"{key}.x: a VLAN id is an integer in 1..4094",
                     f"{key}.200.pcp: unknown key",
                     f"{key}.7.tap: 'this-name-is-too-long' is not an interface name",
                     f"{key}.8: must be a list of addresses",
                     f"{path}: routers.r1.ports.2.tap: 'eth2' is also the TAP of port 1"):
        assert any(p.startswith(expected) for p in found), (expected, found)
    assert len(found) == 7, found


def test_the_plan_adds_an_access_switch_and_a_trunk_per_port_with_vlans(tmp_path):
    plan = make(topology.load(write(tmp_path, TRUNK)), prefix="l0abc", run_dir=tmp_path / "run")
    access = [b for b in plan.bridges if b.port is not None]
    assert [(b.name, b.node, b.router, b.port) for b in access] == [("l0abca0", "r1", False, 1)]
    assert plan.bridge_of("r1").name == "l0abcb0"  # the router's own switch, not the access one
    trunk = next(w for w in plan.wires if w.a.veth == "l0abck0a")
    assert (trunk.a.bridge, trunk.a.ofport, trunk.b.bridge) == ("l0abcb0", 1, "l0abca0")
    assert trunk.b.settings == ("vlan_mode=trunk", "trunks=100,200")
    tags = {w.b.node: (w.a.bridge, w.a.ofport, w.a.settings) for w in plan.wires if w.a.node == "r1"
            and w.b.netns is not None}
    assert tags["h100"] == tags["p1"] == ("l0abca0", None, ("tag=100",))
    assert tags["h2"] == ("l0abcb0", 2, ())  # the untagged port: straight onto the router's switch
    assert (plan.wires[4].b.node, plan.wires[4].b.settings) == ("r1", ("tag=200",))  # [p3, r1:1.200]
    assert all(end.veth.startswith("l0abc") for w in plan.wires for end in (w.a, w.b))
    ports = plan.daemon_config("r1", 6653)["routers"]["r1"]["ports"]
    assert ports[1] == {"vlans": {100: {"tap": "eth1.100", "addresses": ["10.100.0.1/24"]},
                                  200: {"tap": "blue", "addresses": ["10.200.0.1/24"]}}}
    assert ports[2] == {"tap": "eth2", "addresses": ["10.2.0.1/24"]}
    assert plan.owner("10.200.0.1") == "r1"


def test_a_trunk_with_an_untagged_tap_carries_a_native_vlan_the_port_does_not_use(tmp_path):
    text = TRUNK.replace("1: {vlans: {100:", "1: {addresses: [10.1.0.1/24], vlans: {1: [10.1.1.1/24], 100:")
    text = text.replace("[r1:2, h2]", "[r1:1, h2]")
    plan = make(topology.load(write(tmp_path, text)), prefix="l0abc", run_dir=tmp_path / "run")
    trunk = next(w for w in plan.wires if w.a.veth == "l0abck0a")
    assert trunk.b.settings == ("vlan_mode=native-untagged", "tag=2", "trunks=1,2,100,200")
    assert next(w for w in plan.wires if w.b.node == "h2").a.settings == ("tag=2",)
    assert plan.daemon_config("r1", 6653)["routers"]["r1"]["ports"][1]["tap"] == "eth1"


def test_ospf_neighbours_are_counted_per_vlan_segment(tmp_path):
    plan = make(topology.load(write(tmp_path, TRUNK)), prefix="l0abc", run_dir=tmp_path / "run")
    # r1 meets p1 and p2 on VLAN 100 and p3 on VLAN 200, all through the one port 1.
    assert plan.ospf_expected() == {"r1": 3, "p1": 2, "p2": 2, "p3": 1}
    assert plan.ospf_expected(frozenset({frozenset(("r1", "p1"))})) == {"r1": 2, "p1": 0, "p2": 1, "p3": 1}
    assert plan.ospf_expected(dead=frozenset({"r1"})) == {"p1": 1, "p2": 1, "p3": 0}


def test_vlans_of_two_routers_linked_together_or_to_a_switch_are_one_segment(tmp_path):
    text = """
        routers:
          r1: {bird: ospf.conf, ports: {1: {vlans: {100: [10.100.0.1/24]}}}}
          r2: {bird: ospf.conf, ports: {1: {vlans: {100: [10.100.0.2/24], 200: [10.200.0.2/24]}}}}
        peers:
          p1: {config: ospf.conf, addresses: [10.100.0.3/24]}
          p2: {config: ospf.conf, addresses: [10.100.0.4/24]}
          p3: {config: ospf.conf, addresses: [10.200.0.3/24]}
        switches:
          lan: {}
        links:
          - [r1:1.100, r2:1.100]
          - [r1:1.100, p1]
          - [r2:1.100, lan]
          - [lan, p2]
          - [r2:1.200, p3]
    """
    plan = make(topology.load(write(tmp_path, text)), prefix="l0abc", run_dir=tmp_path / "run")
    assert plan.ospf_expected() == {"r1": 3, "r2": 4, "p1": 3, "p2": 3, "p3": 1}
    between = plan.wires[0]
    assert (between.a.bridge, between.a.settings, between.b.bridge, between.b.settings) == (
        "l0abca0", ("tag=100",), "l0abca1", ("tag=100",))
