"""OSPF over a VLAN: a peer BIRD in the host on VLAN 100 (tagged by the access switch) forms a Full
adjacency with the router's BIRD over the VLAN's TAP; the stub network behind it reaches the
kernel via that TAP, then the switch, and traffic to it from another port is switched."""

from __future__ import annotations

import pytest

import birdlab
import vlanlab
from vlanlab import VLANS

STUB, STUB_ADDRESS = "10.20.0.0/24", "10.20.0.1/24"
VID = 100


class VlanBirdLab(birdlab.BirdLab, vlanlab.VlanLab):
    """The trunk lab, its router running BIRD (the starter config: OSPF on every TAP)."""

    def start_vlan_peer(self, vid: int, config: str, lo_addresses: tuple[str, ...]) -> birdlab.PeerBird:
        host = self.vhost(vid)
        for address in lo_addresses:
            host.run("ip", "addr", "add", address, "dev", "lo")
        peer = birdlab.PeerBird(host, self.bird_dir / f"vlan{vid}.conf", self.run_dir / f"{host.name}.ctl",
                                self.bird_dir / f"vlan{vid}.log")
        peer.socket.parent.mkdir(parents=True, exist_ok=True)
        peer.config.write_text("log stderr all;\n" + config)
        self.peers[vid] = peer  # stopped by BirdLab's teardown (ports are 1..3, VLAN ids >= 100)
        peer.start()
        return peer


def ospf_on_eth0(router_id: str, hello: int = 1) -> str:
    return (f"router id {router_id};\n"
            "protocol device { scan time 10; }\n"
            "protocol ospf v2 ospf4 {\n"
            "  ipv4 { import all; export none; };\n"
            "  area 0 {\n"
            f'    interface "eth0" {{ hello {hello}; dead {hello * 4}; wait {hello * 4}; }};\n'
            '    interface "lo" { stub; };\n'
            "  };\n"
            "}\n")


@pytest.fixture
def lab(request, tmp_path, ovs):
    yield from birdlab.running_lab(request, VlanBirdLab(tmp_path), "vlan bird lab")


def test_ospf_adjacency_over_a_vlan_and_switched_route(lab):
    assert f'"{lab.vlan_taps[VID]}"' in lab.starter, f"the starter config leaves out the VLAN TAP:\n{lab.starter}"
    peer_id = VLANS[VID].host_address(4)
    lab.start_vlan_peer(VID, ospf_on_eth0(peer_id), (STUB_ADDRESS,))
    watch = birdlab.Stopwatch()

    def full_neighbour():
        found = [n for n in lab.bird()["ospf_neighbours"] if n["router_id"] == peer_id]
        return found[0] if found and found[0]["state"].startswith("Full") else None

    neighbour = lab.wait_until(full_neighbour, timeout=40, interval=0.5, message=lab.bird_report)
    assert neighbour["interface"] == lab.vlan_taps[VID] and neighbour["address"] == peer_id, neighbour
    print(f"OSPF adjacency over VLAN {VID} Full after {watch():.1f} s: {neighbour}")

    def kernel_route():
        route = lab.kernel_route(STUB)
        return route if route and route.get("gateway") == peer_id else None

    route = lab.wait_until(kernel_route, timeout=20, interval=0.3, message=lab.bird_report)
    assert route["dev"] == lab.vlan_taps[VID] and route["protocol"] == "bird", route
    flow = lab.wait_fib_group_flow(STUB)
    bucket = lab.groups()[flow.group].line
    assert f"{0x1000 | VID}->vlan_vid" in bucket, f"the route's group does not tag VLAN {VID}: {bucket}"
    lab.assert_switched(lab.host(3), "10.20.0.1", STUB)  # untagged port 3 -> VLAN 100
    lab.assert_switched(lab.vhost(300), "10.20.0.1", STUB)  # VLAN 300 on port 2 -> VLAN 100 on port 1
