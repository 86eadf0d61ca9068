"""A lab's topology file, read into frozen values; every problem names the file and the key.

Nothing here builds anything: `load` reads and checks the file's shape and its cross-references
(unknown nodes and ports, two links on one port), and `refusals` asks each daemon whether it
takes its config file (`bird -p -c FILE`), so that a bad lab is refused before anything is made.
"""

from __future__ import annotations

import ipaddress
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..paths import is_plain

MAX_BYTES = 1 << 20
NODE_NAME_MAX = 32
DEFAULT_TIMEOUT = 30.0
DAEMONS = ("bird", "frr", "exabgp")
FRR_DIR = Path("/usr/lib/frr")
SECTIONS = ("name", "routers", "hosts", "peers", "switches", "links", "options")
OSPF = re.compile(r"^\s*protocol\s+ospf\b", re.MULTILINE)
FRR_OSPF = re.compile(r"^\s*router\s+ospf\b", re.MULTILINE)
FRR_BGP = re.compile(r"^\s*router\s+bgp\b", re.MULTILINE)

Interface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class TopologyError(Exception):
    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class RouterPort:
    number: int
    tap: str  # in the router's netns, so the user's BIRD file can name it
    addresses: tuple[Interface, ...]


@dataclass(frozen=True)
class Router:
    name: str
    bird: Path | None
    ports: tuple[RouterPort, ...]
    ospf_neighbours: int | None = None  # None: counted from the links

    def port(self, number: int) -> RouterPort | None:
        return next((p for p in self.ports if p.number == number), None)


@dataclass(frozen=True)
class Host:
    """A host or a peer: a netns with interfaces; a peer also runs a routing daemon."""
    name: str
    interfaces: tuple[tuple[str, tuple[Interface, ...]], ...]
    gateways: tuple[Address, ...] = ()
    loopback: tuple[Interface, ...] = ()
    daemon: str | None = None  # peers only: "bird"
    config: Path | None = None
    ospf_neighbours: int | None = None

    def interface(self, name: str) -> tuple[Interface, ...] | None:
        return next((a for n, a in self.interfaces if n == name), None)


@dataclass(frozen=True)
class Switch:
    """A plain learning switch (an Open vSwitch bridge in standalone mode): a LAN segment."""
    name: str


@dataclass(frozen=True)
class Endpoint:
    node: str
    kind: str  # router, host, peer, switch
    port: int | None = None  # a router's port number
    interface: str | None = None  # a host's or a peer's interface

    def __str__(self) -> str:
        where = self.port if self.port is not None else self.interface
        return self.node if where is None else f"{self.node}:{where}"


@dataclass(frozen=True)
class Link:
    a: Endpoint
    b: Endpoint

    def joins(self, x: str, y: str) -> bool:
        return {self.a.node, self.b.node} == {x, y}


@dataclass(frozen=True)
class Topology:
    path: Path
    name: str
    routers: tuple[Router, ...]
    hosts: tuple[Host, ...]
    peers: tuple[Host, ...]
    switches: tuple[Switch, ...]
    links: tuple[Link, ...]
    timeout: float = DEFAULT_TIMEOUT

    def kind(self, node: str) -> str | None:
        for kind, nodes in (("router", self.routers), ("host", self.hosts), ("peer", self.peers),
                            ("switch", self.switches)):
            if any(n.name == node for n in nodes):
                return kind
        return None

    def router(self, name: str) -> Router:
        return next(r for r in self.routers if r.name == name)

    def peer(self, name: str) -> Host:
        return next(p for p in self.peers if p.name == name)

    def node_names(self) -> list[str]:
        return [n.name for group in (self.routers, self.hosts, self.peers, self.switches) for n in group]


class _Problems:
    def __init__(self, path: Path):
        self.path = path
        self.items: list[str] = []

    def add(self, key: str, message: str) -> None:
        self.items.append(f"{self.path}: {key}: {message}" if key else f"{self.path}: {message}")


def load(path: str | Path) -> Topology:
    """Read and check a topology file; raises TopologyError with every problem found."""
    path = Path(path).resolve()
    problems = _Problems(path)
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise TopologyError([f"{path}: cannot read it: {exc.strerror or exc}"]) from None
    if len(text) > MAX_BYTES:
        raise TopologyError([f"{path}: larger than {MAX_BYTES // 1024} KiB; a topology is a few KB"])
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        raise TopologyError([f"{path}: not YAML: {exc}"]) from None
    if not isinstance(data, dict):
        raise TopologyError([f"{path}: must be a mapping with routers, hosts, peers, switches and links"])
    _unknown(problems, "", data, SECTIONS)
    base = path.parent
    routers = tuple(_router(problems, base, n, d) for n, d in _section(problems, data, "routers"))
    hosts = tuple(_host(problems, base, n, d, peer=False) for n, d in _section(problems, data, "hosts"))
    peers = tuple(_host(problems, base, n, d, peer=True) for n, d in _section(problems, data, "peers"))
    switches = tuple(Switch(str(n)) for n, d in _section(problems, data, "switches")
                     if d is None or _empty_mapping(problems, f"switches.{n}", d))
    name = data.get("name", path.stem)
    if not is_plain(str(name), NODE_NAME_MAX):
        problems.add("name", f"{name!r} is not a plain name (letters, digits, _ . -)")
    timeout = DEFAULT_TIMEOUT
    options = data.get("options") or {}
    if not isinstance(options, dict):
        problems.add("options", "must be a mapping")
    else:
        _unknown(problems, "options", options, ("timeout",))
        timeout = options.get("timeout", DEFAULT_TIMEOUT)
        if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
            problems.add("options.timeout", f"{timeout!r} is not a number of seconds above 0")
            timeout = DEFAULT_TIMEOUT
    topology = Topology(path, str(name), routers, hosts, peers, switches, (), float(timeout))
    _unique_names(problems, data)
    links = _links(problems, topology, data.get("links"))
    if not routers:
        problems.add("routers", "a lab needs at least one router")
    if problems.items:
        raise TopologyError(problems.items)
    return Topology(path, str(name), routers, hosts, peers, switches, links, float(timeout))


def refusals(topology: Topology) -> list[str]:
    """What each daemon says of its config file: `bird -p -c FILE` for routers and BIRD peers."""
    problems = _Problems(topology.path)
    for key, config, daemon in ([(f"routers.{r.name}.bird", r.bird, "bird") for r in topology.routers]
                                + [(f"peers.{p.name}.config", p.config, p.daemon) for p in topology.peers]):
        if config is None:
            continue
        if daemon == "frr":
            message = frr_refusal(config)
            if message:
                problems.add(key, f"FRR refuses {config}: {message}")
            continue
        if daemon == "exabgp":
            message = exabgp_refusal(config)
            if message:
                problems.add(key, f"ExaBGP refuses {config}: {message}")
            continue
        message = bird_refusal(config)
        if message:
            problems.add(key, f"BIRD refuses {config}: {message}")
    return problems.items


def bird_refusal(config: Path) -> str | None:
    try:
        proc = subprocess.run(["bird", "-p", "-c", str(config)], capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        return "bird is not installed (Debian package bird2)"
    if proc.returncode == 0:
        return None
    return (proc.stderr or proc.stdout).strip().removeprefix("bird: ") or f"bird -p exited {proc.returncode}"


def frr_refusal(config: Path) -> str | None:
    """`vtysh -C -f FILE`: FRR's own check of a config, every daemon's commands at once."""
    if shutil.which("vtysh") is None or not (FRR_DIR / "zebra").exists():
        return "FRR is not installed (Debian package frr)"
    proc = subprocess.run(["vtysh", "-C", "-f", str(config)], capture_output=True, text=True, timeout=30)
    if proc.returncode == 0:
        return None
    return " ".join((proc.stderr or proc.stdout).split()) or f"vtysh -C exited {proc.returncode}"


def exabgp_command() -> str | None:
    """ExaBGP's command: beside this Python's (a venv's), else on PATH."""
    beside = Path(sys.executable).parent / "exabgp"
    return str(beside) if beside.exists() else shutil.which("exabgp")


def exabgp_refusal(config: Path) -> str | None:
    """`exabgp validate FILE`."""
    command = exabgp_command()
    if command is None:
        return "ExaBGP is not installed (pip install exabgp)"
    proc = subprocess.run([command, "validate", str(config)], capture_output=True, text=True, timeout=60)
    if proc.returncode == 0:
        return None
    text = " ".join((proc.stderr + proc.stdout).split())
    return text[text.find("error:"):] if "error:" in text else text or f"exabgp validate exited {proc.returncode}"


def frr_daemons(config: Path) -> tuple[str, ...]:
    """The FRR daemons a config needs: zebra and staticd always, bgpd and ospfd when it has them."""
    text = config.read_text(errors="replace")
    return ("zebra", "staticd") + (("bgpd",) if FRR_BGP.search(text) else ()) + (
        ("ospfd",) if FRR_OSPF.search(text) else ())


def speaks_ospf(config: Path | None) -> bool:
    try:
        text = config.read_text(errors="replace") if config is not None else ""
    except OSError:
        return False
    return OSPF.search(text) is not None or FRR_OSPF.search(text) is not None


# --- sections ------------------------------------------------------------------------------------

class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load, except that a key written twice is an error rather than the second one winning."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def _unknown(problems: _Problems, key: str, data: dict, allowed: tuple[str, ...]) -> None:
    for k in data:
        if k not in allowed:
            where = f"{key}.{k}" if key else str(k)
            problems.add(where, f"unknown key (expected one of: {', '.join(allowed)})")


def _empty_mapping(problems: _Problems, key: str, data: Any) -> bool:
    if data == {}:
        return True
    problems.add(key, "a switch takes no settings: write `{}`")
    return False


def _section(problems: _Problems, data: dict, section: str) -> list[tuple[str, Any]]:
    value = data.get(section)
    if value is None:
        return []
    if not isinstance(value, dict):
        problems.add(section, "must be a mapping of name to settings")
        return []
    result = []
    for name, settings in value.items():
        if not is_plain(str(name), NODE_NAME_MAX):
            problems.add(f"{section}.{name}", f"{name!r} is not a plain name of at most {NODE_NAME_MAX} "
                         "characters (letters, digits, _ . -)")
            continue
        result.append((str(name), settings))
    return result


def _unique_names(problems: _Problems, data: dict) -> None:
    seen: dict[str, str] = {}
    for section in ("routers", "hosts", "peers", "switches"):
        for name in (data.get(section) or {}) if isinstance(data.get(section), dict) else {}:
            if str(name) in seen:
                problems.add(f"{section}.{name}", f"the name is also used in {seen[str(name)]}")
            seen.setdefault(str(name), section)


def _file(problems: _Problems, base: Path, key: str, value: Any) -> Path | None:
    if not isinstance(value, str) or not value:
        problems.add(key, "must be the path of a file (relative to the topology file)")
        return None
    path = (base / value).resolve()
    if not path.is_file():
        problems.add(key, f"{path} does not exist")
        return None
    return path


def _addresses(problems: _Problems, key: str, value: Any) -> tuple[Interface, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        problems.add(key, "must be a list of addresses with a prefix length, e.g. [10.0.1.1/24]")
        return ()
    result = []
    for i, item in enumerate(value):
        try:
            if "/" not in str(item):
                raise ValueError("no prefix length")
            result.append(ipaddress.ip_interface(str(item)))
        except ValueError as exc:
            problems.add(f"{key}[{i}]", f"{item!r} is not an address with a prefix length ({exc})")
    return tuple(result)


def _neighbours(problems: _Problems, key: str, data: dict) -> int | None:
    value = data.get("ospf_neighbours")
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        problems.add(f"{key}.ospf_neighbours", f"{value!r} is not a count")
        return None
    return value


def _router(problems: _Problems, base: Path, name: str, data: Any) -> Router:
    key = f"routers.{name}"
    if not isinstance(data, dict):
        problems.add(key, "must be a mapping with bird and ports")
        return Router(name, None, ())
    _unknown(problems, key, data, ("bird", "ports", "ospf_neighbours"))
    bird = _file(problems, base, f"{key}.bird", data["bird"]) if "bird" in data else None
    ports = []
    raw_ports = data.get("ports")
    if not isinstance(raw_ports, dict) or not raw_ports:
        problems.add(f"{key}.ports", "is required: a mapping of switch port number to addresses")
        raw_ports = {}
    taps: dict[str, int] = {}
    for number, settings in raw_ports.items():
        pkey = f"{key}.ports.{number}"
        if not isinstance(number, int) or isinstance(number, bool) or not 1 <= number <= 0xFF00:
            problems.add(pkey, "a port is a switch port number, 1 to 65280")
            continue
        if isinstance(settings, list) or settings is None:
            settings = {"addresses": settings or []}
        if not isinstance(settings, dict):
            problems.add(pkey, "must be a list of addresses or a mapping with addresses (and tap)")
            continue
        _unknown(problems, pkey, settings, ("addresses", "tap"))
        tap = settings.get("tap", f"eth{number}")
        if not is_plain(str(tap), 15):
            problems.add(f"{pkey}.tap", f"{tap!r} is not an interface name of at most 15 characters")
        elif tap in taps:
            problems.add(f"{pkey}.tap", f"{tap!r} is also the TAP of port {taps[tap]}")
        taps.setdefault(str(tap), number)
        ports.append(RouterPort(number, str(tap), _addresses(problems, f"{pkey}.addresses",
                                                                settings.get("addresses"))))
    return Router(name, bird, tuple(sorted(ports, key=lambda p: p.number)), _neighbours(problems, key, data))


def _host(problems: _Problems, base: Path, name: str, data: Any, peer: bool) -> Host:
    section = "peers" if peer else "hosts"
    key = f"{section}.{name}"
    if not isinstance(data, dict):
        problems.add(key, "must be a mapping" + (" with daemon, config and interfaces" if peer
                                                   else " with addresses or interfaces"))
        return Host(name, ())
    allowed = ("addresses", "interfaces", "gateway", "loopback") + (
        ("daemon", "config", "ospf_neighbours") if peer else ())
    _unknown(problems, key, data, allowed)
    interfaces: list[tuple[str, tuple[Interface, ...]]] = []
    if "addresses" in data and "interfaces" in data:
        problems.add(key, "give either addresses (for eth0) or interfaces, not both")
    if "interfaces" in data:
        raw = data["interfaces"]
        if not isinstance(raw, dict) or not raw:
            problems.add(f"{key}.interfaces", "must be a mapping of interface name to a list of addresses")
            raw = {}
        for ifname, addresses in raw.items():
            if not is_plain(str(ifname), 15) or str(ifname) == "lo":
                problems.add(f"{key}.interfaces.{ifname}", "is not an interface name of at most 15 characters")
                continue
            interfaces.append((str(ifname), _addresses(problems, f"{key}.interfaces.{ifname}", addresses)))
    else:
        interfaces.append(("eth0", _addresses(problems, f"{key}.addresses", data.get("addresses"))))
    gateways = data.get("gateway") or []
    gateways = [gateways] if isinstance(gateways, str) else gateways
    parsed_gateways = []
    if not isinstance(gateways, list):
        problems.add(f"{key}.gateway", "must be an address or a list of addresses (one IPv4, one IPv6)")
        gateways = []
    for i, gateway in enumerate(gateways):
        try:
            parsed_gateways.append(ipaddress.ip_address(str(gateway)))
        except ValueError:
            problems.add(f"{key}.gateway", f"{gateway!r} is not an address")
    loopback = _addresses(problems, f"{key}.loopback", data.get("loopback"))
    daemon = config = None
    if peer:
        daemon = data.get("daemon", "bird")
        if daemon not in DAEMONS:
            problems.add(f"{key}.daemon", f"{daemon!r} is not supported here yet (supported: {', '.join(DAEMONS)})")
        if "config" not in data:
            problems.add(f"{key}.config", "is required: the daemon's config file")
        else:
            config = _file(problems, base, f"{key}.config", data["config"])
    return Host(name, tuple(interfaces), tuple(parsed_gateways), loopback, daemon, config,
                _neighbours(problems, key, data) if peer else None)


def _endpoint(problems: _Problems, topology: Topology, key: str, text: Any) -> Endpoint | None:
    if not isinstance(text, str) or not text:
        problems.add(key, f"{text!r} is not an endpoint: NODE, NODE:PORT (a router) or NODE:INTERFACE")
        return None
    node, _, where = text.partition(":")
    kind = topology.kind(node)
    if kind is None:
        problems.add(key, f"{node!r} is not a node of this file (nodes: {', '.join(topology.node_names())})")
        return None
    if kind == "switch":
        if where:
            problems.add(key, f"{text!r}: a switch's ports are numbered by the lab; write just {node!r}")
            return None
        return Endpoint(node, kind)
    if kind == "router":
        router = topology.router(node)
        if not where.isdigit() or router.port(int(where)) is None:
            ports = ", ".join(str(p.number) for p in router.ports)
            problems.add(key, f"{text!r}: router {node} has no port {where or '(none given)'} "
                         f"(its ports: {ports})")
            return None
        return Endpoint(node, kind, port=int(where))
    host = next(h for h in (topology.hosts if kind == "host" else topology.peers) if h.name == node)
    interface = where or "eth0"
    if host.interface(interface) is None:
        names = ", ".join(n for n, _ in host.interfaces)
        problems.add(key, f"{text!r}: {kind} {node} has no interface {interface} (its interfaces: {names})")
        return None
    return Endpoint(node, kind, interface=interface)


def _links(problems: _Problems, topology: Topology, data: Any) -> tuple[Link, ...]:
    if data is None:
        return ()
    if not isinstance(data, list):
        problems.add("links", "must be a list of [A, B] pairs")
        return ()
    links = []
    used: dict[str, int] = {}
    for i, item in enumerate(data):
        key = f"links[{i}]"
        if not isinstance(item, list) or len(item) != 2:
            problems.add(key, f"{item!r} is not a pair [A, B]")
            continue
        a = _endpoint(problems, topology, key, item[0])
        b = _endpoint(problems, topology, key, item[1])
        if a is None or b is None:
            continue
        if a.node == b.node:
            problems.add(key, f"links {a.node} to itself")
            continue
        if a.kind == "switch" and b.kind == "switch":
            problems.add(key, "joins two switches; join them through a router")
            continue
        clash = False
        for end in (a, b):
            if end.kind == "switch":
                continue
            if str(end) in used:
                problems.add(key, f"{end} is already linked by links[{used[str(end)]}]: one link per port")
                clash = True
            used.setdefault(str(end), i)
        if not clash:
            links.append(Link(a, b))
    return tuple(links)
