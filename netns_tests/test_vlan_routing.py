"""Routing on VLAN sub-interfaces: hosts tagged by the trunk lab's access switch reach the router on
every VLAN (both families), each other between VLANs on one port (router on a stick) and across
ports, and the untagged hosts; transit traffic is forwarded by the switch alone (flows and groups count it, the relay does not); and a VLAN and the
untagged network on the same port stay apart at layer 2."""

from __future__ import annotations

import re

import pytest

import ofctl
import vlanlab
from vlanlab import VLANS

COUNT = 200  # transit pings per pair in the offload test


@pytest.fixture
def lab(request, tmp_path, ovs):
    yield from vlanlab.vlan_lab(request, tmp_path)


def untagged(port: int, family: int) -> str:
    return f"10.0.{port}.2" if family == 4 else f"2001:db8:{port}::2"


def test_the_router_answers_on_every_vlan_and_untagged(lab):
    for vid, net in VLANS.items():
        for family in (4, 6):
            lab.assert_ping(lab.vhost(vid), net.router(family), count=3)
    for port in vlanlab.UNTAGGED_PORTS:
        for gateway in (lab.host(port).gateway4, lab.host(port).gateway6):
            lab.assert_ping(lab.host(port), str(gateway), count=3)
    # The router's replies came from the VLAN TAPs: the kernel knows each host there.
    neighbours = {(n["dst"], n["dev"]) for n in lab.router_neighbours() if "lladdr" in n}
    for vid, net in VLANS.items():
        assert (net.host_address(4), lab.vlan_taps[vid]) in neighbours, neighbours


def host_entry(lab, address: str) -> ofctl.Flow | None:
    return next((f for f in ofctl.with_destination(lab.flows(), address) if f.group is not None), None)


# (name, source, destination address, destination) over every kind of tag transition.
def pairs(lab, family: int) -> list[tuple[str, object, str]]:
    v = {vid: lab.vhost(vid) for vid in VLANS}
    return [
        ("VLAN 100 -> VLAN 200, same port", v[100], VLANS[200].host_address(family)),
        ("VLAN 200 -> VLAN 100, same port", v[200], VLANS[100].host_address(family)),
        ("VLAN 100 -> VLAN 300, across ports", v[100], VLANS[300].host_address(family)),
        ("VLAN 300 -> VLAN 200, across ports", v[300], VLANS[200].host_address(family)),
        ("VLAN 100 -> untagged, same port", v[100], untagged(1, family)),
        ("untagged -> VLAN 200, same port", lab.host(1), VLANS[200].host_address(family)),
        ("VLAN 300 -> untagged, across ports", v[300], untagged(3, family)),
        ("untagged -> VLAN 100, across ports", lab.host(3), VLANS[100].host_address(family)),
    ]


@pytest.mark.parametrize("family", [4, 6], ids=["ipv4", "ipv6"])
def test_routed_between_vlans_and_untagged_in_the_switch(lab, family):
    every = pairs(lab, family)
    for name, src, dst in every:
        result = lab.ping(src, dst, count=3, deadline=10)
        assert result.returncode == 0, f"{name}: {src.name} -> {dst} failed:\n{result.stdout}{result.stderr}"
        ttls = set(re.findall(r"\b(?:ttl|hlim)=(\d+)", result.stdout))
        assert ttls == {"63"}, f"{name}: expected one router hop (TTL 63):\n{result.stdout}"

    destinations = sorted({dst for _, _, dst in every})
    lab.wait_until(lambda: all(host_entry(lab, d) for d in destinations), timeout=10,
                   message=lambda: f"host entries with groups for {destinations}:\n{lab.dump_flows()}")
    # Each VLAN host's group sets its VLAN id on the way out (OFPVID_PRESENT | vid).
    groups = lab.groups()
    for vid, net in VLANS.items():
        bucket = groups[host_entry(lab, net.host_address(family)).group].line
        assert f"{0x1000 | vid}->vlan_vid" in bucket, f"VLAN {vid}'s host group sets no tag {vid}: {bucket}"

    # -- transit is the switch's: PacketIns to the TAPs do not grow with it -----------------
    before_to_tap = lab.to_tap()
    before = {d: host_entry(lab, d).n_packets for d in destinations}
    groups_of = {d: host_entry(lab, d).group for d in destinations}
    group_before = {d: ofctl.group_stats(lab.bridge)[g].packet_count for d, g in groups_of.items()}
    for name, src, dst in every:
        result = lab.ping(src, dst, count=COUNT // len(every), deadline=None, extra=("-i", "0.005", "-q"))
        assert result.returncode == 0, f"{name}: {result.stdout}{result.stderr}"
    sent = COUNT // len(every)

    def grown():
        return {d: host_entry(lab, d).n_packets - before[d] for d in destinations}

    # Requests count on the destination's entry (replies on the source's, also a destination).
    lab.wait_until(lambda: all(g >= sent for g in grown().values()), timeout=10,
                   message=lambda: f"host entries grew by {grown()}, {sent} requests each expected")
    # The same packets went through the destinations' groups, which set (or leave off) their tags.
    def group_grown():
        stats = ofctl.group_stats(lab.bridge)
        return {d: stats[g].packet_count - group_before[d] for d, g in groups_of.items()}

    lab.wait_until(lambda: all(g >= sent for g in group_grown().values()), timeout=10,
                   message=lambda: f"groups grew by {group_grown()}, {sent} packets each expected")
    after_to_tap = lab.to_tap()
    assert after_to_tap - before_to_tap < 10, (
        f"{after_to_tap - before_to_tap} PacketIns reached the TAPs during {sent * len(every)} transit pings")


def test_vlan_and_untagged_on_one_port_stay_apart(lab):
    """A host in VLAN 100 given an address in the untagged subnet of the same port cannot reach
    that subnet's host, nor the other way round: the router bridges nothing between them."""
    v100, h1 = lab.vhost(100), lab.host(1)
    lab.assert_ping(v100, VLANS[100].router(4), count=2)
    lab.assert_ping(h1, "10.0.1.1", count=2)
    v100.run("ip", "addr", "add", "10.0.1.50/24", "dev", "eth0")
    h1.run("ip", "addr", "add", "10.100.0.50/24", "dev", "eth0")
    for src, dst in ((v100, "10.0.1.2"), (h1, "10.100.0.2")):
        result = lab.ping(src, dst, count=3, deadline=None)
        assert result.returncode != 0, f"{src.name} reached {dst} on link across the VLAN:\n{result.stdout}"
    # Neither host ever learnt the other's MAC: not one ARP request crossed.
    for host, other in ((h1, "10.0.1.50"), (v100, "10.100.0.50")):
        neigh = host.run("ip", "neigh", "show", other)
        assert "lladdr" not in neigh, f"{host.name} learnt {other} across the VLAN: {neigh}"
    # Without the borrowed addresses, the same hosts reach each other routed.
    v100.run("ip", "addr", "del", "10.0.1.50/24", "dev", "eth0")
    h1.run("ip", "addr", "del", "10.100.0.50/24", "dev", "eth0")
    lab.assert_ping(v100, "10.0.1.2", count=2)
