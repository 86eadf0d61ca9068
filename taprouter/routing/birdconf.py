"""Writes a starter BIRD 2 config for a router: users begin from it and edit."""

from __future__ import annotations

from ..config import RouterConfig


def router_id(router: RouterConfig) -> str:
    for port in router.ports:
        for iface in port.addresses:
            if iface.version == 4:
                return str(iface.ip)
    # No IPv4 address: any unique 32-bit number will do; derive it from the dpid.
    value = router.dpid & 0xFFFFFFFF or 1
    return ".".join(str((value >> s) & 0xFF) for s in (24, 16, 8, 0))


def starter(router: RouterConfig, hello: int = 10) -> str:
    taps = ", ".join(f'"{p.tap}"' for p in router.ports)
    has_v6 = any(a.version == 6 for p in router.ports for a in p.addresses)
    dead = hello * 4
    lines = [
        f"# BIRD 2 starter config for taprouter router {router.name} (netns {router.netns}).",
        "# Written by `taprouter bird-config`; edit freely. Every TAP below is a switch port.",
        f"router id {router_id(router)};",
        "",
        "protocol device { scan time 10; }",
        "",
        "# Connected subnets of the switch ports, so OSPF and BGP can announce them.",
        "protocol direct {",
        "  ipv4;",
        *(["  ipv6;"] if has_v6 else []),
        f"  interface {taps};",
        "}",
        "",
        "# Routes BIRD learns go into the kernel; taprouter puts the kernel's routes on the switch.",
        "# graceful restart: when taprouter restarts a BIRD that died (with -R), the routes the dead",
        "# BIRD left in the kernel stay there, and on the switch, until BGP and OSPF have converged.",
        "protocol kernel kernel4 {",
        "  ipv4 { import none; export filter { if source = RTS_DEVICE then reject; accept; }; };",
        "  merge paths on;  # ECMP: the switch gets a select group",
        "  graceful restart on;",
        "}",
    ]
    if has_v6:
        lines += [
            "protocol kernel kernel6 {",
            "  ipv6 { import none; export filter { if source = RTS_DEVICE then reject; accept; }; };",
            "  merge paths on;",
            "  graceful restart on;",
            "}",
        ]
    lines += [
        "",
        "protocol ospf v2 ospf4 {",
        "  ipv4 { import all; export none; };",
        "  # A restarted BIRD's recovery waits for OSPF's adjacencies too, at most this long (an",
        "  # interface with no OSPF neighbour makes it wait the whole time).",
        f"  graceful restart yes; graceful restart time {2 * dead};",
        "  area 0 {",
        f"    interface {taps} {{ hello {hello}; dead {dead}; wait {dead}; }};",
        "  };",
        "}",
    ]
    return "\n".join(lines) + "\n"
