"""OSPF: a peer router in h2 forms a Full adjacency with the router's BIRD over the TAP; the stub
network behind it reaches the router's kernel, then the switch, and h1's traffic to it is switched."""

from __future__ import annotations

import subprocess

import pytest

import birdlab

STUB = "10.20.0.0/24"


@pytest.fixture
def lab(request, tmp_path, ovs):
    yield from birdlab.bird_lab(request, tmp_path, peers=[birdlab.ospf_peer(port=2, stub="10.20.0.1/24")])


def test_starter_config_is_valid_bird(lab):
    # `taprouter bird-config` as printed, unedited, passes BIRD's own parser.
    starter = lab.bird_dir / "starter.conf"
    starter.write_text(lab.starter)
    result = subprocess.run(["bird", "-p", "-c", str(starter)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, f"bird -p refuses the starter config:\n{result.stderr}\n{lab.starter}"
    for tap in lab.taps.values():
        assert f'"{tap}"' in lab.starter, f"starter config does not mention TAP {tap}:\n{lab.starter}"
    assert "hello 1; dead 4;" in lab.starter, lab.starter
    # And it is what the router runs: BIRD's own protocols, in status.
    protocols = {p["name"]: p for p in lab.bird()["protocols"]}
    assert {"kernel4", "ospf4"} <= protocols.keys(), protocols


def test_ospf_adjacency_route_flow_and_switched_ping(lab):
    watch = birdlab.Stopwatch()

    def full_neighbour():
        bird = lab.bird()
        found = [n for n in bird["ospf_neighbours"] if n["router_id"] == "10.0.2.2"]
        return found[0] if found and found[0]["state"].startswith("Full") else None

    neighbour = lab.wait_until(full_neighbour, timeout=40, interval=0.5, message=lab.bird_report)
    assert neighbour["interface"] == lab.taps[2] and neighbour["address"] == "10.0.2.2", neighbour
    print(f"OSPF adjacency Full after {watch():.1f} s: {neighbour}")

    def kernel_route():
        route = lab.kernel_route(STUB)
        return route if route and route.get("gateway") == "10.0.2.2" else None

    route = lab.wait_until(kernel_route, timeout=20, interval=0.3, message=lab.bird_report)
    assert route["dev"] == lab.taps[2] and route["protocol"] == "bird", route
    text = lab.in_router("ip", "route", "show", STUB).stdout
    assert f"{STUB} via 10.0.2.2" in text and "proto bird" in text, text
    print(f"route in the kernel after {watch():.1f} s: {text.strip()}")

    flow = lab.wait_fib_group_flow(STUB)
    print(f"FIB entry with a group after {watch():.1f} s: {flow.actions}")

    lab.assert_switched(lab.host(1), "10.20.0.1", STUB)
    ospf = lab.protocol("ospf4")
    assert ospf["state"] == "up" and ospf["routes_imported"] >= 1, ospf
