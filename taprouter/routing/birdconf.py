"""Writes a starter BIRD 2 config for a router: users begin from it and edit."""

from __future__ import annotations

from ..config import RouterConfig

HELLO_MAX = 16383  # dead and wait are four times hello, and BIRD takes at most 65535 for each


class StarterError(ValueError):
    pass


def router_id(router: RouterConfig) -> str:
    """The lowest IPv4 address of the router's ports. An IPv6-only router still needs a 32-bit id
    (OSPFv3, BGP): the dpid's low 32 bits, where switches differ (Open vSwitch derives them from a
    MAC address), or its high 32 bits when those are zero; never 0.0.0.0, which BIRD refuses."""
    v4 = sorted(iface.ip for port in router.taps for iface in port.addresses if iface.version == 4)
    if v4:
        return str(v4[0])
    value = router.dpid & 0xFFFFFFFF or router.dpid >> 32 & 0xFFFFFFFF
    return ".".join(str((value >> s) & 0xFF) for s in (24, 16, 8, 0))


def _taps(router: RouterConfig, version: int) -> str:
    return ", ".join(f'"{p.tap}"' for p in router.taps if any(a.version == version for a in p.addresses))


def _ospf(version: int, name: str, channel: str, taps: str, hello: int) -> list[str]:
    dead = hello * 4
    return [
        f"protocol ospf v{version} {name} {{",
        f"  {channel} {{ import all; export none; }};",
        "  # A restarted BIRD's recovery waits for OSPF's adjacencies too, at most this long (an",
        "  # interface with no OSPF neighbour makes it wait the whole time).",
        f"  graceful restart yes; graceful restart time {min(2 * dead, 1800)};  # BIRD allows 1 to 1800",
        "  area 0 {",
        f"    interface {taps} {{ hello {hello}; dead {dead}; wait {dead}; }};",
        "  };",
        "}",
    ]


def _kernel(name: str, channel: str) -> list[str]:
    return [
        f"protocol kernel {name} {{",
        f"  {channel} {{ import none; export filter {{ if source = RTS_DEVICE then reject; accept; }}; }};",
        "  merge paths on;  # ECMP: the switch gets a select group",
        "  graceful restart on;",
        "}",
    ]


def starter(router: RouterConfig, hello: int = 10) -> str:
    if not 1 <= hello <= HELLO_MAX:
        raise StarterError(f"--ospf-hello must be 1 to {HELLO_MAX} seconds (dead and wait are four times it, "
                           f"at most 65535), not {hello}")
    taps4, taps6 = _taps(router, 4), _taps(router, 6)
    all_taps = ", ".join(f'"{p.tap}"' for p in router.taps)
    rid = router_id(router)
    lines = [
        f"# BIRD 2 starter config for taprouter router {router.name} (netns {router.netns}).",
        "# Written by `taprouter bird-config`; edit freely. Every TAP below is a switch port.",
    ]
    if not taps4:
        lines.append("# No IPv4 address: the router id comes from the dpid; it must be unique in the OSPF domain.")
    lines += [
        f"router id {rid};",
        "",
        "protocol device { scan time 10; }",
        "",
        "# Connected subnets of the switch ports, so OSPF and BGP can announce them.",
        "protocol direct {",
        *(["  ipv4;"] if taps4 else []),
        *(["  ipv6;"] if taps6 else []),
        f"  interface {all_taps};",
        "}",
        "",
        "# Routes BIRD learns go into the kernel; taprouter puts the kernel's routes on the switch.",
        "# graceful restart: when taprouter restarts a BIRD that died (with -R), the routes the dead",
        "# BIRD left in the kernel stay there, and on the switch, until BGP and OSPF have converged.",
    ]
    if taps4:
        lines += _kernel("kernel4", "ipv4")
    if taps6:
        lines += _kernel("kernel6", "ipv6")
    if taps4:
        lines += ["", *_ospf(2, "ospf4", "ipv4", taps4, hello)]
    if taps6:
        lines += ["", "# OSPFv3 for the IPv6 addresses: it runs on the link-local addresses of the same TAPs.",
                  *_ospf(3, "ospf6", "ipv6", taps6, hello)]
    if not taps4 and not taps6:
        lines += ["# No port has an address yet: add some in the taprouter config, then run bird-config again."]
    return "\n".join(lines) + "\n"
