"""A trunk lab: hosts tagged by a second Open vSwitch bridge, trunked into the router's ports.

The kernel has no 802.1Q module, so no namespace can tag a frame itself. An access switch does
it instead: a standalone (NORMAL) userspace bridge, `<prefix>ab`, with the hosts on access ports
and two veth trunks into the router's bridge (veths rather than patch ports, so that a trunk is a
real link whose carrier a test can cut, exactly like test_port_down cuts a host's):

    router port 1  <- trunk k1: native VLAN 1 untagged (h1), VLANs 100 (v100) and 200 (v200)
    router port 2  <- trunk k2: VLAN 300 only (v300); the router has no untagged TAP there
    router port 3  <- h3, a plain untagged host (RouterLab's own wiring)

Names, hosts and teardown are RouterLab's; this adds the access switch, its hosts and the
router's `vlans:` config.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from routerlab import RouterLab, free_tcp_port, run, running_lab
from taprouter.lab import Host
from taprouter.labkit.netdev import bridge_port, learning_bridge, veth_into, vsctl

NATIVE_VLAN = 1  # the access switch's VLAN for untagged frames on trunk k1


@dataclass(frozen=True)
class VlanNet:
    """A routed VLAN: its port and id, the router's addresses on it (host part .1 / ::1)."""

    port: int
    vid: int
    ipv4: str
    ipv6: str

    def router(self, family: int = 4) -> str:
        return str(ipaddress.ip_interface(self.ipv4 if family == 4 else self.ipv6).ip)

    def host_address(self, family: int = 4) -> str:
        """The lab host's address in the VLAN (host part 2)."""
        return str(ipaddress.ip_interface(self.ipv4 if family == 4 else self.ipv6).ip + 1)

    def host_interface(self, family: int) -> str:
        iface = ipaddress.ip_interface(self.ipv4 if family == 4 else self.ipv6)
        return f"{iface.ip + 1}/{iface.network.prefixlen}"


VLANS = {
    100: VlanNet(1, 100, "10.100.0.1/24", "2001:db8:100::1/64"),
    200: VlanNet(1, 200, "10.200.0.1/24", "2001:db8:200::1/64"),
    300: VlanNet(2, 300, "10.130.0.1/24", "2001:db8:300::1/64"),
}
UNTAGGED_PORTS = (1, 3)  # router ports with an untagged TAP (10.0.N.1/24, 2001:db8:N::1/64)
TRUNK_PORTS = (1, 2)


class VlanLab(RouterLab):
    """The router: port 1 untagged + VLANs 100 and 200, port 2 VLAN 300, port 3 untagged."""

    def __init__(self, tmp_path: Path, vlans: dict[int, VlanNet] | None = None):
        super().__init__(tmp_path)
        self.vlans = dict(VLANS if vlans is None else vlans)
        self.taps = {n: f"{self.prefix}p{n}" for n in UNTAGGED_PORTS}
        self.vlan_taps = {vid: f"{self.prefix}p{v.port}.{vid}" for vid, v in self.vlans.items()}
        self.vhosts: dict[int, Host] = {}

    # -- building ---------------------------------------------------------------------------

    @property
    def access_bridge(self) -> str:
        return f"{self.prefix}ab"

    def trunk_veth(self, port: int) -> str:
        """The access switch's end of the trunk into router port `port` (the router's end is
        `self.lab.switch_veth(port)`)."""
        return f"{self.prefix}k{port}"

    def build(self) -> None:
        self.lab.up()
        vsctl(learning_bridge(self.access_bridge))
        trunks = {1: [NATIVE_VLAN] + [v for v, n in self.vlans.items() if n.port == 1],
                  2: [v for v, n in self.vlans.items() if n.port == 2]}
        for port in TRUNK_PORTS:
            router_end, access_end = self.lab.switch_veth(port), self.trunk_veth(port)
            run("ip", "link", "add", router_end, "type", "veth", "peer", "name", access_end)
            for end in (router_end, access_end):
                # The root netns's own IPv6 (router solicitations, MLD) must not talk on a trunk.
                run("sysctl", "-qw", f"net.ipv6.conf.{end}.disable_ipv6=1")
                run("ip", "link", "set", end, "up")
            # Trunk 1 carries VLAN 1 untagged (a switch's native VLAN); trunk 2 only tagged frames.
            mode = (["vlan_mode=native-untagged", f"tag={NATIVE_VLAN}"] if port == 1
                    else ["vlan_mode=trunk"])
            vsctl(bridge_port(self.lab.bridge, router_end, port)
                  + bridge_port(self.access_bridge, access_end)
                  + ["--", "set", "port", access_end, *mode,
                     "trunks=" + ",".join(str(v) for v in trunks[port])])
        self.add_access_host("h1", 1, NATIVE_VLAN, "10.0.1.2/24", "2001:db8:1::2/64", "10.0.1.1",
                             "2001:db8:1::1")
        for vid, net in self.vlans.items():
            self.vhosts[vid] = self.add_access_host(f"v{vid}", net.port, vid, net.host_interface(4),
                                                    net.host_interface(6), net.router(4), net.router(6))
        self.lab.add_host("h3", 3, "10.0.3.2/24", "2001:db8:3::2/64", gateway4="10.0.3.1",
                          gateway6="2001:db8:3::1")
        self.metrics_port = free_tcp_port()
        self.config_path.write_text(yaml.safe_dump(self.config(), sort_keys=False))

    def add_access_host(self, name: str, port: int, vid: int, ipv4: str, ipv6: str, gateway4: str,
                        gateway6: str) -> Host:
        """A host netns on an access port of VLAN `vid`; `port` is the router port it is behind."""
        host = Host(f"{self.prefix}{name}", port, ipaddress.IPv4Interface(ipv4),
                    ipaddress.IPv6Interface(ipv6), ipaddress.IPv4Address(gateway4),
                    ipaddress.IPv6Address(gateway6))
        self.lab.hosts.append(host)  # Lab.down() removes its netns
        outer, inner = f"{self.prefix}a{name}", f"{self.prefix}i{name}"
        run("ip", "netns", "add", host.name)
        run("ip", "link", "set", "lo", "up", netns=host.name)
        # veth_into turns tx offload off: the userspace datapath does not complete checksums.
        veth_into(host.name, outer, inner, "eth0", [host.ipv4, host.ipv6], [host.gateway4, host.gateway6])
        vsctl(bridge_port(self.access_bridge, outer) + ["--", "set", "port", outer, f"tag={vid}"])
        return host

    def port_config(self, port: int) -> dict:
        entry: dict = {}
        if port in UNTAGGED_PORTS:
            entry = {"tap": self.taps[port], "addresses": [f"10.0.{port}.1/24", f"2001:db8:{port}::1/64"]}
        vlans = {vid: {"tap": self.vlan_taps[vid], "addresses": [net.ipv4, net.ipv6]}
                 for vid, net in self.vlans.items() if net.port == port}
        if vlans:
            entry["vlans"] = vlans
        return entry

    def config(self) -> dict:
        ports = sorted(set(UNTAGGED_PORTS) | {n.port for n in self.vlans.values()})
        return {
            "openflow": self.lab.openflow_config(),
            "database": f"sqlite:///{self.tmp_path / 'taprouter.db'}",
            "metrics": {"listen": f"127.0.0.1:{self.metrics_port}"},
            "routers": {self.router: {
                "dpid": self.dpid,
                "netns": self.netns,
                "ports": {n: self.port_config(n) for n in ports},
            }},
        }

    def write_config(self) -> None:
        """Rewrite the config from `self.vlans` (after a test changed them), keeping other keys
        a subclass or test added (e.g. `bird`)."""
        current = yaml.safe_load(self.config_path.read_text())
        current["routers"][self.router]["ports"] = self.config()["routers"][self.router]["ports"]
        self.config_path.write_text(yaml.safe_dump(current, sort_keys=False))

    # -- state ------------------------------------------------------------------------------

    def vhost(self, vid: int) -> Host:
        return self.vhosts[vid]

    def punt_flows_installed(self) -> bool:
        """The untagged ports' punt flows, and an ARP punt flow for every VLAN's address."""
        flows = self.flows()
        targets = {f.match.get("arp_tpa") for f in flows}
        return (all(f"10.0.{n}.1" in targets for n in UNTAGGED_PORTS)
                and all(net.router(4) in targets for net in self.vlans.values())
                and any("CONTROLLER" in f.actions for f in flows))

    def vlan_tap_link(self, vid: int) -> dict:
        return json.loads(self.in_router("ip", "-j", "link", "show", self.vlan_taps[vid]).stdout)[0]

    def vlan_tap_exists(self, vid: int) -> bool:
        return self.in_router("ip", "link", "show", self.vlan_taps[vid], check=False).returncode == 0

    def carrier(self, tap: str) -> bool:
        flags = json.loads(self.in_router("ip", "-j", "link", "show", tap).stdout)[0]["flags"]
        return "NO-CARRIER" not in flags

    def to_tap(self) -> int:
        """Frames the relay has written to the TAPs (PacketIns it delivered), from a fresh status."""
        return self.fresh_daemon_status()["relay"]["to_tap"]

    def metrics(self) -> dict:
        """/metrics: family name -> family, as prometheus_client parses the text."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as response:
            text = response.read().decode()
        return {family.name: family for family in text_string_to_metric_families(text)}

    def counter(self, family: str, **labels: str) -> float:
        """The sum of a counter's `_total` samples whose labels include `labels` (0 when none)."""
        found = self.metrics().get(family)
        return sum(s.value for s in found.samples
                   if s.name == family + "_total" and labels.items() <= s.labels.items()) if found else 0.0

    # -- teardown ---------------------------------------------------------------------------

    def teardown(self) -> list[str]:
        problems = []
        result = subprocess.run(["ovs-vsctl", "--if-exists", "del-br", self.access_bridge],
                                capture_output=True, text=True, timeout=30)
        if result.returncode != 0:
            problems.append(f"deleting {self.access_bridge}: {result.stderr.strip()}")
        if self.proc is None:
            # No daemon ran (a layer-2 test): nothing for `taprouter down` to remove.
            self.config_path.unlink(missing_ok=True)
        return problems + super().teardown()  # the hosts, veths and router bridge; then leftovers


def vlan_lab(request, tmp_path: Path, start: bool = True, **options):
    """Fixture body: a built VlanLab, with its daemon started unless not `start`."""
    lab = VlanLab(tmp_path, **options)
    if start:
        yield from running_lab(request, lab, "vlan lab")
        return
    yield from _built_only(request, lab)


def _built_only(request, lab: VlanLab):
    request.node._router_lab = lab
    problems: list[str] = []
    try:
        lab.build()
        yield lab
    finally:
        problems = lab.teardown()
        if problems:
            print("vlan lab teardown problems:\n  " + "\n  ".join(problems), file=sys.stderr)
    if problems:
        pytest.fail("vlan lab teardown: " + "; ".join(problems), pytrace=False)
