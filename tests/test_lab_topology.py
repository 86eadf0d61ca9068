"""taprouter lab's topology file: read into values, and refused with the file and key named."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from taprouter.labkit import converge, topology
from taprouter.labkit.plan import make
from taprouter.labkit.running import kernel_routes, parse_ping
from taprouter.routing.birdctl import OspfNeighbour, Protocol

OSPF_CONF = 'router id 10.0.0.1;\nprotocol device {}\nprotocol ospf v2 { area 0 { interface "eth1"; }; }\n'


def write(tmp_path: Path, text: str, **files: str) -> Path:
    for name, body in files.items():
        (tmp_path / name).write_text(body)
    path = tmp_path / "lab.yaml"
    path.write_text(textwrap.dedent(text))
    return path


GOOD = """
    routers:
      r1: {bird: r1.conf, ports: {1: [10.0.12.1/30], 2: [10.1.0.1/24]}}
      r2: {bird: r2.conf, ports: {1: {addresses: [10.0.12.2/30], tap: up0}}}
    hosts:
      h1: {addresses: [10.1.0.2/24], gateway: 10.1.0.1}
    links:
      - [r1:1, r2:1]
      - [r1:2, h1]
"""


def good(tmp_path: Path) -> Path:
    return write(tmp_path, GOOD, **{"r1.conf": OSPF_CONF, "r2.conf": OSPF_CONF})


def problems(path: Path) -> list[str]:
    with pytest.raises(topology.TopologyError) as caught:
        topology.load(path)
    return caught.value.problems


def test_a_good_file_is_read_into_values(tmp_path):
    topo = topology.load(good(tmp_path))
    assert [r.name for r in topo.routers] == ["r1", "r2"]
    assert topo.router("r1").port(1).tap == "eth1" and topo.router("r2").port(1).tap == "up0"
    assert str(topo.hosts[0].gateways[0]) == "10.1.0.1"
    assert [(str(link.a), str(link.b)) for link in topo.links] == [("r1:1", "r2:1"), ("r1:2", "h1:eth0")]
    assert topology.refusals(topo) == []


def test_a_link_to_a_node_that_does_not_exist_is_refused_with_file_and_key(tmp_path):
    path = good(tmp_path)
    path.write_text(path.read_text() + "  - [r2:1, h9]\n")
    (problem,) = problems(path)
    assert problem.startswith(f"{path}: links[2]: ") and "'h9' is not a node" in problem


def test_two_links_on_one_port_are_refused(tmp_path):
    path = good(tmp_path)
    path.write_text(path.read_text().replace("[r1:2, h1]", "[r1:1, h1]"))
    found = problems(path)
    assert any("links[1]" in p and "r1:1 is already linked by links[0]" in p for p in found), found


def test_a_port_a_router_does_not_have_is_refused(tmp_path):
    path = good(tmp_path)
    path.write_text(path.read_text().replace("[r1:2, h1]", "[r1:7, h1]"))
    assert any("router r1 has no port 7" in p for p in problems(path))


def test_unknown_keys_bad_addresses_and_a_missing_config_are_each_named(tmp_path):
    path = write(tmp_path, """
        routers:
          r1: {bird: nowhere.conf, ports: {1: [10.0.0.1]}, colour: red}
        peers:
          p1: {daemon: quagga, config: p1.conf}
    """)
    found = problems(path)
    assert any("routers.r1.bird: " in p and "does not exist" in p for p in found), found
    assert any("routers.r1.ports.1.addresses[0]" in p for p in found), found
    assert any("routers.r1.colour: unknown key" in p for p in found), found
    assert any("peers.p1.daemon: 'quagga' is not supported" in p for p in found), found


def test_a_peer_config_bird_refuses_is_named_before_anything_is_built(tmp_path):
    path = write(tmp_path, textwrap.dedent(GOOD) + "peers:\n  p1: {config: p1.conf}\n",
                 **{"r1.conf": OSPF_CONF, "r2.conf": OSPF_CONF, "p1.conf": "protocol bgp { nonsense; }\n"})
    (problem,) = topology.refusals(topology.load(path))
    assert problem.startswith(f"{path}: peers.p1.config: BIRD refuses ") and "p1.conf" in problem


def test_a_key_written_twice_is_refused(tmp_path):
    path = write(tmp_path, "routers:\n  r1: {ports: {1: []}}\n  r1: {ports: {1: []}}\n")
    assert "appears twice" in problems(path)[0]


def test_the_plan_names_everything_with_the_prefix(tmp_path):
    plan = make(topology.load(good(tmp_path)), prefix="l1234", run_dir=tmp_path / "run")
    names = [b.name for b in plan.bridges] + [n for _, n in plan.netns]
    names += [e.veth for w in plan.wires for e in (w.a, w.b)]
    assert all(n.startswith("l1234") and len(n) <= 15 for n in names), names
    config = plan.daemon_config("r1", 6653)
    assert config["routers"]["r1"]["netns"] == "l1234-r1" and config["metrics"] == {"listen": None}
    assert plan.ospf_expected() == {"r1": 1, "r2": 1}
    assert plan.ospf_expected(down=frozenset({frozenset(("r1", "r2"))})) == {"r1": 0, "r2": 0}


def test_convergence_names_what_is_not_there_yet():
    bgp = Protocol("isp", "BGP", "---", "start", "12:00:00", "Active")
    full = OspfNeighbour("ospf1", "10.0.0.2", "Full/PtP", "eth1", "10.0.12.2")
    init = OspfNeighbour("ospf1", "10.0.0.3", "Init/PtP", "eth2", "10.0.13.2")
    assert converge.judge("r1", [bgp], [full, init], 2) == [
        "r1: BGP isp is start Active",
        "r1: OSPF 1 of 2 neighbours Full (seen: 10.0.0.2 Full/PtP on eth1, 10.0.0.3 Init/PtP on eth2)"]
    assert converge.judge("r1", [bgp], [full], 1, skipped=frozenset({"isp"})) == []


def test_the_ospf_database_must_hold_every_adjacency_before_the_lab_is_converged():
    lines = [(1016, t) for t in ["", "area 0.0.0.0", "", "\trouter 10.0.0.1", "\t\tdistance 0",
                                 "\t\trouter 10.0.0.2 metric 10", "", "\trouter 10.0.0.2", "\t\tdistance 10"]]
    view = converge.ospf_topology(lines)
    assert view == {"10.0.0.1": (0, frozenset({"10.0.0.2"})), "10.0.0.2": (10, frozenset())}
    r1 = converge.OspfView("r1", "10.0.0.1", frozenset({"10.0.0.2"}), view)
    r2 = converge.OspfView("r2", "10.0.0.2", frozenset({"10.0.0.1"}), view)
    assert converge.flooded([r1, r2]) == ["r1: OSPF database lacks r2's links to 10.0.0.1 (flooding)",
                                          "r2: OSPF database lacks r2's links to 10.0.0.1 (flooding)"]


def test_ping_and_ip_route_output_are_read():
    ping = parse_ping("3 packets transmitted, 2 received, 33% packet loss, time 401ms\n"
                      "rtt min/avg/max/mdev = 0.313/0.733/1.557/0.582 ms\n")
    assert (ping.sent, ping.received, ping.rtt_ms) == (3, 2, 0.733) and round(ping.loss, 2) == 0.33
    routes = kernel_routes([{"dst": "default", "gateway": "192.0.2.2"},
                            {"dst": "10.2.0.0/24", "nexthops": [{"gateway": "10.0.13.2"}, {"gateway": "10.0.12.2"}]},
                            {"dst": "fe80::/64"}, {"dst": "10.9.0.0/16", "type": "unreachable"}])
    assert routes == {"0.0.0.0/0": ("192.0.2.2",), "10.2.0.0/24": ("10.0.12.2", "10.0.13.2")}


def test_a_link_gone_from_the_adjacencies_but_still_in_the_database_is_not_converged():
    lines = [(1016, t) for t in ["\trouter 10.0.0.1", "\t\tdistance 0", "\t\trouter 10.0.0.2 metric 10",
                                 "\t\trouter 10.0.0.3 metric 10"]]
    r1 = converge.OspfView("r1", "10.0.0.1", frozenset({"10.0.0.3"}), converge.ospf_topology(lines))
    assert converge.flooded([r1]) == ["r1: OSPF database still has r1's links to 10.0.0.2 (flooding)",
                                      "r1: OSPF database lacks 10.0.0.3's link to r1 (flooding)"]


def test_more_neighbours_than_the_links_allow_is_not_converged_either():
    full = [OspfNeighbour("ospf1", f"10.0.0.{i}", "Full/PtP", f"eth{i}", f"10.0.1{i}.2") for i in (2, 3)]
    assert converge.judge("r1", [], full, 1) == [
        "r1: OSPF 2 neighbours Full, 1 expected (seen: 10.0.0.2 Full/PtP on eth2, 10.0.0.3 Full/PtP on eth3)"]


def test_frr_answers_are_read_as_bird_words():
    summary = {"ipv4Unicast": {"peers": {"198.51.100.1": {"state": "Established"}, "192.0.2.1": {"state": "Active"}}}}
    protocols = converge.frr_protocols(summary)
    assert [(p.name, p.state, p.info) for p in protocols] == [
        ("198.51.100.1", "up", "Established"), ("192.0.2.1", "start", "Active")]
    neighbours = converge.frr_neighbours(
        {"neighbors": {"10.0.0.1": [{"nbrState": "Full/-", "ifaceName": "eth0:10.0.1.2", "ifaceAddress": "10.0.1.2"}]}})
    assert neighbours == [OspfNeighbour("ospf", "10.0.0.1", "Full/-", "eth0", "10.0.1.2")]
    assert converge.judge("isp", protocols, neighbours, 1) == ["isp: BGP 192.0.2.1 is start Active"]


def test_a_neighbour_that_is_not_asked_must_announce_its_side_too():
    lines = [(1016, t) for t in ["\trouter 10.0.0.1", "\t\tdistance 0", "\t\trouter 10.0.0.9 metric 10", "",
                                 "\trouter 10.0.0.9", "\t\tdistance 10"]]
    r1 = converge.OspfView("r1", "10.0.0.1", frozenset({"10.0.0.9"}), converge.ospf_topology(lines))
    assert converge.flooded([r1]) == ["r1: OSPF database lacks 10.0.0.9's link to r1 (flooding)"]
