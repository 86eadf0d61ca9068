"""Plans the ingress and punt flows: which frames the switch hands to the kernel."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Iterable

from ..openflow import pipeline
from ..openflow.flows import (BGP_PORT, ETH_TYPE_ARP, ETH_TYPE_IPV4, ETH_TYPE_IPV6, IPPROTO_ICMPV6, IPPROTO_OSPF,
                              IPPROTO_TCP, FieldMatch, Flow, Match, exact, prefix_match, to_controller)
from ..openflow.pipeline import PRIO_LOCAL, PRIO_MULTICAST, PRIO_ND, PRIO_PROTOCOL, Owner, Table
from . import vlans

BROADCAST_MAC = 0xFFFFFFFFFFFF
MULTICAST_BIT = 0x010000000000

# ICMPv6 types the kernel needs: MLD query/report/done, MLDv2 report, RS, RA, NS, NA, redirect.
ICMPV6_CONTROL_TYPES = (130, 131, 132, 143, 133, 134, 135, 136, 137)
IPV4_LINK_LOCAL_MULTICAST = ipaddress.IPv4Network("224.0.0.0/24")  # OSPF's 224.0.0.5 and .6
IPV6_LINK_SCOPE_MULTICAST = ipaddress.IPv6Network("ff02::/16")  # OSPFv3, all-nodes, solicited-node
IPV6_LINK_LOCAL = ipaddress.IPv6Network("fe80::/10")
IPV4_LIMITED_BROADCAST = ipaddress.IPv4Address("255.255.255.255")


@dataclass(frozen=True)
class PortView:
    """What the punt plan needs to know of one TAP: its port's number and MAC, the router's addresses
    on it, and its VLAN (fib.PortBinding.vid: None on a router without VLANs, 0 untagged)."""

    number: int
    mac: int
    addresses: tuple[ipaddress.IPv4Interface | ipaddress.IPv6Interface, ...]
    vid: int | None = None


def _flow(table: Table, priority: int, *fields, goto: Table | None = None,
          punt: bool = False, meter: int | None = None) -> Flow:
    return pipeline.check(Flow(
        table=int(table), priority=priority, match=Match.of(*fields),
        actions=(to_controller(),) if punt else (), goto=None if goto is None else int(goto),
        meter=meter, cookie=pipeline.cookie(Owner.PORT)))


def _punt(priority: int, *fields, meter: int | None) -> Flow:
    return _flow(Table.PUNT, priority, *fields, punt=True, meter=meter)


def _policed(priority: int, *fields) -> Flow:
    """Punted, after the per-port meters of PUNT_POLICE."""
    return _flow(Table.PUNT, priority, *fields, goto=Table.PUNT_POLICE)


def police_flows(ports: Iterable[PortView]) -> list[Flow]:
    """PUNT_POLICE: what the punt table hands over goes to the controller through the meters of the
    port it came in on: ARP and ND/RA/MLD through the port's resolve meter, the rest through its
    local meter. A port without meters of its own (its number out of range) shares PUNT_METER."""
    flows = []
    for port in ports:
        ids = pipeline.port_meters(port.number)
        if ids is None:
            continue
        resolve, local = ids
        in_port = exact("in_port", port.number)
        flows.append(_flow(Table.PUNT_POLICE, PRIO_ND, in_port, exact("eth_type", ETH_TYPE_ARP), punt=True,
                           meter=resolve))
        for icmp_type in ICMPV6_CONTROL_TYPES:
            flows.append(_flow(Table.PUNT_POLICE, PRIO_ND, in_port, exact("eth_type", ETH_TYPE_IPV6),
                               exact("ip_proto", IPPROTO_ICMPV6), exact("icmpv6_type", icmp_type), punt=True,
                               meter=resolve))
        flows.append(_flow(Table.PUNT_POLICE, PRIO_LOCAL, in_port, punt=True, meter=local))
    flows.append(_flow(Table.PUNT_POLICE, 0, punt=True, meter=pipeline.PUNT_METER))
    return flows


def protocol_flows(v4: list, v6: list, bgp_peers: frozenset | None = None) -> list[Flow]:
    """OSPF (to any address: hellos are multicast), unmetered; and BGP between our addresses and
    `bgp_peers`, unmetered. With the peers unknown (None), BGP is not singled out: TCP to port 179
    is policed with the rest of the router's own traffic, so a SYN flood from anyone stays metered."""
    flows = []
    for eth_type in (ETH_TYPE_IPV4, ETH_TYPE_IPV6):
        flows.append(_punt(PRIO_PROTOCOL, exact("eth_type", eth_type), exact("ip_proto", IPPROTO_OSPF),
                           meter=None))
    for peer in sorted(bgp_peers or (), key=lambda a: (a.version, int(a))):
        for iface in v4 if peer.version == 4 else v6:
            eth = exact("eth_type", ETH_TYPE_IPV4 if iface.version == 4 else ETH_TYPE_IPV6)
            src = exact("ipv4_src" if iface.version == 4 else "ipv6_src", int(peer))
            dst = exact("ipv4_dst" if iface.version == 4 else "ipv6_dst", int(iface.ip))
            tcp = exact("ip_proto", IPPROTO_TCP)
            flows.append(_punt(PRIO_PROTOCOL, eth, src, dst, tcp, exact("tcp_dst", BGP_PORT), meter=None))
            # One below, so a segment with both ports 179 matches exactly one flow.
            flows.append(_punt(PRIO_PROTOCOL - 1, eth, src, dst, tcp, exact("tcp_src", BGP_PORT), meter=None))
    return flows


def ingress_flows(port: PortView) -> list[Flow]:
    """Frames on a known port (and, with VLANs, with the TAP's tag or none) pass on, to the policies,
    only when addressed to the router."""
    tag = vlans.tag_match(port.vid)
    on = (exact("in_port", port.number),) if tag is None else (exact("in_port", port.number), tag)
    return [
        _flow(Table.INGRESS, 100, *on, exact("eth_dst", port.mac), goto=Table.POLICY),
        _flow(Table.INGRESS, 100, *on, exact("eth_dst", BROADCAST_MAC), goto=Table.POLICY),
        _flow(Table.INGRESS, 90, *on, FieldMatch("eth_dst", MULTICAST_BIT, MULTICAST_BIT),
              goto=Table.POLICY),
    ]


def punt_flows(ports: Iterable[PortView], bgp_peers: frozenset | None = None) -> list[Flow]:
    """The router's own traffic, port-agnostic: Linux answers for any of its addresses on any port."""
    flows: list[Flow] = []
    v4 = sorted({a for p in ports for a in p.addresses if a.version == 4}, key=str)
    v6 = sorted({a for p in ports for a in p.addresses if a.version == 6}, key=str)
    ipv4 = exact("eth_type", ETH_TYPE_IPV4)
    ipv6 = exact("eth_type", ETH_TYPE_IPV6)
    flows.extend(protocol_flows(v4, v6, bgp_peers))
    for iface in v4:
        flows.append(_policed(PRIO_ND, exact("eth_type", ETH_TYPE_ARP), exact("arp_tpa", int(iface.ip))))
        flows.append(_policed(PRIO_LOCAL, ipv4, exact("ipv4_dst", int(iface.ip))))
        if iface.network.prefixlen < 31:
            flows.append(_policed(PRIO_LOCAL, ipv4, exact("ipv4_dst", int(iface.network.broadcast_address))))
    for iface in v6:
        flows.append(_policed(PRIO_LOCAL, ipv6, exact("ipv6_dst", int(iface.ip))))
    for icmp_type in ICMPV6_CONTROL_TYPES:
        flows.append(_policed(PRIO_ND, ipv6, exact("ip_proto", IPPROTO_ICMPV6), exact("icmpv6_type", icmp_type)))
    flows.append(_policed(PRIO_LOCAL, ipv4, exact("ipv4_dst", int(IPV4_LIMITED_BROADCAST))))
    flows.append(_policed(PRIO_MULTICAST, ipv4, prefix_match("ipv4_dst", IPV4_LINK_LOCAL_MULTICAST)))
    flows.append(_policed(PRIO_MULTICAST, ipv6, prefix_match("ipv6_dst", IPV6_LINK_SCOPE_MULTICAST)))
    flows.append(_policed(PRIO_MULTICAST, ipv6, prefix_match("ipv6_dst", IPV6_LINK_LOCAL)))
    return flows


def plan(ports: Iterable[PortView], bgp_peers: frozenset | None = None) -> frozenset[Flow]:
    """All ingress and punt flows for a router's ports, BGP admitted from `bgp_peers` (addresses)
    only; pure."""
    ports = list(ports)
    flows: list[Flow] = []
    for port in ports:
        flows.extend(ingress_flows(port))
    tagged: dict[int, list[int]] = {}  # on a router with VLANs: port -> the VLANs its TAPs carry
    for port in ports:
        if port.vid is not None:
            tagged.setdefault(port.number, []).append(port.vid)
    for number, vids in tagged.items():
        flows.extend(vlans.drop_flows(number, vids))
    if ports:
        flows.extend(punt_flows(ports, bgp_peers))
        flows.extend(police_flows(ports))
    return frozenset(flows)
