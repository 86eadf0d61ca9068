"""The commands that build labs: Open vSwitch bridges on the userspace datapath, veths, and an
interface moved into a netns and addressed. Shared by `taprouter lab`, the demo's lab
(taprouter/lab.py) and the netns tests."""

from __future__ import annotations

import ipaddress
import re
import subprocess
from typing import Iterable, Sequence

from ..controller.openflow.pipeline import Table


def sh(*args: str, check: bool = True, netns: str | None = None, timeout: float = 30,
       stdin: str | None = None) -> str:
    cmd = (["ip", "netns", "exec", netns] if netns else []) + list(args)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=stdin)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def prefix_tracking(bridge: str) -> list[str]:
    """ovs-vsctl arguments that have Open vSwitch track IPv4 and IPv6 destination prefixes in the
    pipeline's tables (see README, "Open vSwitch").

    By default it tracks nw_src and nw_dst only. The punt table matches the router's own IPv6
    addresses exactly and the IPv6 FIB holds /128 host entries, so without ipv6_dst every IPv6
    destination routed through the switch became a datapath flow of its own: 40 pings to 40
    addresses behind one /48 left 40 of them, against one for 40 IPv4 addresses behind a /16.
    """
    ident = "fib" + re.sub(r"\W", "_", bridge)  # one per bridge: several may share a transaction
    tables = [f"flow_tables:{table.value}=@{ident}" for table in Table]
    return ["--", f"--id=@{ident}", "create", "Flow_Table", "prefixes=nw_dst,ipv6_dst",
            "--", "set", "Bridge", bridge, *tables]


def router_bridge(name: str, dpid: int) -> list[str]:
    """ovs-vsctl arguments for a router's switch: OpenFlow 1.3 only, secure (nothing forwards
    until the daemon says so), no in-band control."""
    return ["--", "--may-exist", "add-br", name, "--",
            "set", "bridge", name, "datapath_type=netdev", "protocols=OpenFlow13",
            "fail_mode=secure", f"other-config:datapath-id={dpid:016x}",
            "other-config:disable-in-band=true", *prefix_tracking(name)]


def controller(bridge: str, target: str) -> list[str]:
    """ovs-vsctl arguments pointing a bridge at its controller. It reconnects within 1 s of a
    controller restart (the default backs off to 8 s)."""
    return ["--", "set-controller", bridge, target,
            "--", "set", "controller", bridge, "max_backoff=1000", "inactivity_probe=5000"]


def learning_bridge(name: str) -> list[str]:
    """ovs-vsctl arguments for a plain learning switch (standalone: Open vSwitch's NORMAL)."""
    return ["--", "--may-exist", "add-br", name, "--", "set", "bridge", name, "datapath_type=netdev",
            "fail_mode=standalone"]


def bridge_port(bridge: str, ifname: str, ofport: int | None = None) -> list[str]:
    args = ["--", "--may-exist", "add-port", bridge, ifname]
    if ofport is not None:
        args += ["--", "set", "interface", ifname, f"ofport_request={ofport}"]
    return args


def vsctl(args: Sequence[str], timeout: float = 30) -> None:
    """One ovs-vsctl transaction for many commands (each starts with "--")."""
    if args:
        sh("ovs-vsctl", f"--timeout={int(timeout)}", *args[1:] if args[0] == "--" else args, timeout=timeout + 5)


def interface_script(ifname: str, inner: str, addresses: Iterable[ipaddress.IPv4Interface | ipaddress.IPv6Interface],
                     gateways: Iterable[ipaddress.IPv4Address | ipaddress.IPv6Address] = ()) -> list[str]:
    """Shell lines, run inside the netns, that name, raise and address an interface moved in.

    The userspace datapath does not complete partial checksums of veth frames: tx offload off.
    """
    lines = [f"ip link set {inner} name {ifname}",
             f"sysctl -qw net.ipv6.conf.{ifname}.accept_dad=0",
             f"ip link set {ifname} up",
             f"ethtool -K {ifname} tx off >/dev/null 2>&1 || true"]
    for address in addresses:
        lines.append(f"ip addr add {address} dev {ifname}" + (" nodad" if address.version == 6 else ""))
    for gateway in gateways:
        lines.append(f"ip -{gateway.version} route add default via {gateway}")
    return lines


def run_in(netns: str, lines: Sequence[str], timeout: float = 30) -> None:
    """Run shell lines inside a netns in one process, stopping at the first that fails."""
    sh("sh", "-ec", "\n".join(lines), netns=netns, timeout=timeout)


def veth_into(netns: str, outer: str, inner: str, ifname: str, addresses=(), gateways=()) -> None:
    """A veth pair whose `inner` end becomes `ifname` in `netns` (addressed) and whose `outer` end
    stays up in the root netns."""
    sh("ip", "link", "add", outer, "type", "veth", "peer", "name", inner)
    sh("ip", "link", "set", inner, "netns", netns)
    sh("ip", "link", "set", outer, "up")
    run_in(netns, interface_script(ifname, inner, addresses, gateways))
