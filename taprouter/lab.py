"""A built-in lab: one Open vSwitch bridge (userspace datapath) and hosts in network namespaces.

Used by `make demo` and the netns tests. Every name it creates starts with
its prefix, and `down()` removes all of them, so labs never collide.
"""

from __future__ import annotations

import ipaddress
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from .labkit.netdev import controller, router_bridge, sh, veth_into, vsctl

__all__ = ["Host", "Lab", "Pki", "make_pki", "sh"]


@dataclass(frozen=True)
class Pki:
    """A throwaway CA that signed a controller and a switch certificate: TLS for a lab."""
    ca: Path
    controller_key: Path
    controller_cert: Path
    switch_key: Path
    switch_cert: Path

    def tls_config(self) -> dict[str, str]:
        """The daemon config's `openflow.tls` for it."""
        return {"key": str(self.controller_key), "cert": str(self.controller_cert), "ca": str(self.ca)}


def make_pki(directory: Path) -> Pki:
    """EC P-256 keys, certificates valid for 30 days, made with the openssl command."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    pki = Pki(*(directory / name for name in (
        "ca-cert.pem", "controller-key.pem", "controller-cert.pem", "switch-key.pem", "switch-cert.pem")))
    ca_key = directory / "ca-key.pem"
    sh("openssl", "req", "-x509", *key, "-keyout", str(ca_key), "-out", str(pki.ca), "-days", "30",
       "-subj", "/CN=taprouter lab CA")
    for name, private, cert in (("controller", pki.controller_key, pki.controller_cert),
                                ("switch", pki.switch_key, pki.switch_cert)):
        request = directory / f"{name}.csr"
        sh("openssl", "req", *key, "-keyout", str(private), "-out", str(request),
           "-subj", f"/CN=taprouter lab {name}")
        sh("openssl", "x509", "-req", "-in", str(request), "-CA", str(pki.ca), "-CAkey", str(ca_key),
           "-CAcreateserial", "-out", str(cert), "-days", "30")
    return pki


@dataclass(frozen=True)
class Host:
    name: str  # also its netns
    port: int  # its switch port
    ipv4: ipaddress.IPv4Interface
    ipv6: ipaddress.IPv6Interface | None
    gateway4: ipaddress.IPv4Address | None = None
    gateway6: ipaddress.IPv6Address | None = None

    def run(self, *args: str, check: bool = True, timeout: float = 30) -> str:
        return sh(*args, check=check, netns=self.name, timeout=timeout)

    def popen(self, *args: str, **kwargs) -> subprocess.Popen:
        return subprocess.Popen(["ip", "netns", "exec", self.name, *args], **kwargs)


@dataclass
class Lab:
    prefix: str  # short: names are prefix + suffix, within 15 characters
    controller_port: int
    dpid: int = 1
    hosts: list[Host] = field(default_factory=list)
    # Over TLS: Open vSwitch's one SSL setting (for all its bridges) is set to the lab's switch
    # certificate while the lab is up.
    pki: Pki | None = None

    @property
    def bridge(self) -> str:
        return f"{self.prefix}br"

    def openflow_config(self) -> dict:
        """The daemon config's `openflow` section for this lab's switch."""
        section: dict = {"listen": f"127.0.0.1:{self.controller_port}"}
        if self.pki is not None:
            section["tls"] = self.pki.tls_config()
        return section

    def switch_veth(self, port: int) -> str:
        return f"{self.prefix}s{port}"

    def up(self) -> None:
        transport = "tcp"
        if self.pki is not None:
            sh("ovs-vsctl", "set-ssl", str(self.pki.switch_key), str(self.pki.switch_cert), str(self.pki.ca))
            transport = "ssl"
        vsctl(router_bridge(self.bridge, self.dpid)
              + controller(self.bridge, f"{transport}:127.0.0.1:{self.controller_port}"))

    def add_host(self, name: str, port: int, ipv4: str, ipv6: str | None = None,
                 gateway4: str | None = None, gateway6: str | None = None) -> Host:
        host = Host(f"{self.prefix}{name}", port, ipaddress.IPv4Interface(ipv4),
                    ipaddress.IPv6Interface(ipv6) if ipv6 else None,
                    ipaddress.IPv4Address(gateway4) if gateway4 else None,
                    ipaddress.IPv6Address(gateway6) if gateway6 else None)
        self.hosts.append(host)
        sw, inner = self.switch_veth(port), f"{self.prefix}h{port}"
        sh("ip", "netns", "add", host.name)
        sh("ip", "link", "set", "lo", "up", netns=host.name)
        veth_into(host.name, sw, inner, "eth0", [a for a in (host.ipv4, host.ipv6) if a],
                  [g for g in (host.gateway4, host.gateway6) if g])
        sh("ovs-vsctl", "add-port", self.bridge, sw, "--", "set", "interface", sw,
           f"ofport_request={port}")
        return host

    def down(self) -> None:
        """Remove everything this lab created; safe to call more than once, even half built."""
        sh("ovs-vsctl", "--if-exists", "del-br", self.bridge, check=False)
        if self.pki is not None:
            sh("ovs-vsctl", "del-ssl", check=False)
        # Hosts this object made, and hosts named like a lab's (PREFIXh1, ...) left by a crashed run.
        leftover = re.compile(rf"^{re.escape(self.prefix)}h\d+$")
        for netns in sh("ip", "netns", "list", check=False).splitlines():
            name = netns.split()[0] if netns.strip() else ""
            if any(name == h.name for h in self.hosts) or leftover.match(name):
                sh("ip", "netns", "del", name, check=False)
        for line in sh("ip", "-o", "link", "show", check=False).splitlines():
            ifname = line.split(":")[1].strip().split("@")[0] if ":" in line else ""
            if ifname.startswith(self.prefix):
                sh("ip", "link", "del", ifname, check=False)
