"""Loading and validating the taprouter YAML file into frozen, typed objects."""

from __future__ import annotations

import ipaddress
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from . import configaddr, configvlan, configyaml, dburl, dpid as dpids, paths
from .configyaml import child, key_path, kind, shown, shown_path

IFNAMSIZ = 15  # Linux interface names are at most 15 bytes
MAX_DPID = dpids.MAX_DPID
# OpenFlow 1.3 reserves 0xffffff00 and above for logical ports.
MAX_PORT = 0xFFFFFF00 - 1
# Interface names a TAP cannot have: ones every netns has (lo; the fallback tunnel devices once
# their module is loaded), and ones Linux refuses because /proc/sys/net/*/conf/ has them.
RESERVED_IFNAMES = {
    "lo": "every netns has its loopback interface by that name",
    **dict.fromkeys(("sit0", "tunl0", "ip6tnl0", "gre0", "gretap0", "erspan0", "ip_vti0", "ip6_vti0",
                     "ip6gre0"), "the kernel makes a tunnel device by that name in every netns"),
    **dict.fromkeys(("all", "default"), "Linux refuses it: /proc/sys/net/ipv4/conf/ has an entry by "
                                        "that name"),
}
# A Unix socket's path must fit sockaddr_un's sun_path: 108 bytes with the terminating NUL.
SUN_PATH_MAX = 107
_PLAIN_RULE = "use letters, digits, '_', '.' and '-', not starting with '.' or '-'"

Interface = configaddr.Interface
VlanConfig = configvlan.VlanConfig
PortTap = configvlan.PortTap


class ConfigError(Exception):
    """A config file is wrong; the message names the file, the key and the problem."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class Listen:
    host: str
    port: int


OPENFLOW_LISTEN = Listen("127.0.0.1", 6653)
METRICS_LISTEN = Listen("127.0.0.1", 9362)
WEB_LISTEN = Listen("127.0.0.1", 8080)
ANY_ADDRESS = {"0.0.0.0", "::"}


@dataclass(frozen=True)
class TlsConfig:
    """PEM files: the controller's private key and certificate, and the CA that signed the
    switches' certificates (None: switches are not asked for one)."""
    key: Path
    cert: Path
    ca: Path | None


@dataclass(frozen=True)
class ControlConfig:
    """The daemon's local API: HTTP with JSON on a Unix socket."""
    socket: Path

    @staticmethod
    def default() -> "ControlConfig":
        return ControlConfig(paths.run_root() / "control.sock")


@dataclass(frozen=True)
class MetricsConfig:
    listen: Listen | None  # None: no /metrics


@dataclass(frozen=True)
class HaConfig:
    """The HA pair (README "High availability"): off unless enabled, and only with PostgreSQL."""

    enabled: bool = False
    node: str = ""  # the name the lease shows; "" -> host name and PID, at start
    lease_seconds: float = 2.0
    converge_timeout: float = 120.0
    settle_seconds: float = 3.0


@dataclass(frozen=True)
class WebConfig:
    listen: Listen
    tls: TlsConfig | None = None  # HTTPS with this key and certificate (its `ca` is always None)


@dataclass(frozen=True)
class PortConfig:
    number: int
    tap: str | None  # the untagged TAP; None: the port carries VLANs only
    addresses: tuple[Interface, ...]
    vlans: tuple[VlanConfig, ...] = ()  # by vid

    @property
    def taps(self) -> tuple[PortTap, ...]:
        """Every TAP of the port: the untagged one (when there is one), then each VLAN's."""
        return configvlan.taps(self.number, self.tap, self.addresses, self.vlans)


@dataclass(frozen=True)
class BirdConfig:
    config: Path


@dataclass(frozen=True)
class RouterConfig:
    name: str
    dpid: int
    netns: str
    ports: tuple[PortConfig, ...]
    bird: BirdConfig | None

    @property
    def taps(self) -> tuple[PortTap, ...]:
        """Every TAP of the router, port by port."""
        return tuple(t for p in self.ports for t in p.taps)


@dataclass(frozen=True)
class Config:
    path: Path
    listen: Listen
    routers: tuple[RouterConfig, ...]
    tls: TlsConfig | None = None  # switches connect over TLS, not TCP
    warnings: tuple[str, ...] = ()  # "FILE: KEY: why": odd but working; `check --strict` refuses them
    database: str = dburl.DEFAULT  # policies live there (taprouter.dburl reads it)
    control: ControlConfig = field(default_factory=ControlConfig.default)
    metrics: MetricsConfig = MetricsConfig(METRICS_LISTEN)
    web: WebConfig = WebConfig(WEB_LISTEN)
    ha: HaConfig = HaConfig()

class _Problems:
    """Collects every problem in a file so the user fixes them in one pass."""

    def __init__(self, path: Path):
        self.path = path
        self.items: list[str] = []
        self.warnings: list[str] = []

    def add(self, key: str, problem: str) -> None:
        self.items.append(f"{self.path}: {key}: {problem}")

    def warn(self, key: str, problem: str) -> None:
        self.warnings.append(f"{self.path}: {key}: {problem}")


def _unknown_keys(problems: _Problems, where: str, data: dict, allowed: Iterable[str]) -> None:
    for key in data:
        if key not in allowed:
            problems.add(child(where, key),
                         f"unknown key (allowed: {', '.join(sorted(allowed))})")


def _not_text(value: Any) -> str:
    """The problem with a non-text value where a name belongs: YAML's reading, and the cure."""
    what = kind(value)
    if what == "boolean":
        return ("must be a name (text), not a boolean: quote it (YAML reads yes, no, on, off, true "
                "and false as booleans)")
    if what in ("number", "date"):
        return f"must be a name (text), not the {what} {shown(value)}: quote it"
    return f"must be a name (text), not {what if what == 'null' else 'a ' + what}"


def _name_problem(value: Any, what: str, max_length: int = paths.NAME_MAX) -> str | None:
    """Why `value` cannot be a router, netns or TAP name (each becomes a path or an argument)."""
    if not isinstance(value, str):
        return _not_text(value)
    if not paths.is_plain(value, max_length):
        return f"{shown(value)} is not a valid {what}: {_PLAIN_RULE}, at most {max_length} characters"
    return None


def _path_problem(value: Any, what: str) -> str | None:
    if value is None or value == "":
        return f"is required: {what}"
    if not isinstance(value, str):
        return f"must be {what} (text), not {shown(value) if kind(value) == 'number' else 'a ' + kind(value)}"
    return None


def _file_problem(path: Path) -> str | None:
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return f"{shown_path(path)} does not exist"
    except (OSError, ValueError) as exc:  # too long, not searchable, a NUL in it
        return f"{shown_path(path)} cannot be used: {getattr(exc, 'strerror', None) or exc}"
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return f"{shown_path(path)} is a directory, not a file"
    return f"{shown_path(path)} is not a regular file"


def _beside(base: Path, text: str) -> Path:
    """A path from the file: relative ones are relative to the config file's directory."""
    return Path(text) if Path(text).is_absolute() else base / text


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_openflow(problems: _Problems, base: Path, data: Any) -> tuple[Listen, TlsConfig | None]:
    if data is None:
        return OPENFLOW_LISTEN, None
    if not isinstance(data, dict):
        problems.add("openflow", "must be a mapping")
        return OPENFLOW_LISTEN, None
    _unknown_keys(problems, "openflow", data, ("listen", "tls"))
    return (_parse_listen(problems, "openflow", data, OPENFLOW_LISTEN),
            _parse_tls(problems, base, "openflow.tls", data.get("tls"), _SWITCH_TLS))


# A TLS block's files: (key, what the PEM file holds, required).
_SWITCH_TLS = (("key", "the controller's private key", True), ("cert", "the controller's certificate", True),
               ("ca", "the CA certificate that signed the switches' certificates", False))
_WEB_TLS = (("cert", "the web server's certificate", True), ("key", "the web server's private key", True))


def _parse_tls(problems: _Problems, base: Path, where: str, data: Any,
               wanted: tuple[tuple[str, str, bool], ...]) -> TlsConfig | None:
    if data is None:
        return None
    names = [name for name, _, _ in wanted]
    if not isinstance(data, dict):
        required = [repr(name) for name, _, needed in wanted if needed]
        optional = [repr(name) for name, _, needed in wanted if not needed]
        problems.add(where, "must be a mapping with " + (", ".join(required) + " and optionally " + ", ".join(optional)
                                                         if optional else " and ".join(required)))
        return None
    _unknown_keys(problems, where, data, names)
    files: dict[str, Path | None] = {"ca": None}
    for name, what, required in wanted:
        text = data.get(name)
        if text is None and not required:
            continue
        problem = _path_problem(text, f"the PEM file of {what}")
        if problem:
            problems.add(f"{where}.{name}", problem)
            return None
        path = _beside(base, text)
        problem = _file_problem(path)
        if problem:
            problems.add(f"{where}.{name}", problem)
        files[name] = path
    return TlsConfig(files["key"], files["cert"], files["ca"])


def _parse_listen(problems: _Problems, where: str, data: dict, default: Listen) -> Listen:
    """`where`.listen, HOST:PORT; absent, the default."""
    if "listen" not in data:
        return default
    key, text = f"{where}.listen", data["listen"]
    if not isinstance(text, str) or ":" not in text:
        problems.add(key, f"must be HOST:PORT, got {shown(text)}")
        return default
    host, _, port_text = text.rpartition(":")
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        problems.add(key, f"{shown(host)} is not an IP address")
    if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
        problems.add(key, f"port {shown(port_text)} is not in 1..65535")
        return default
    return Listen(host, int(port_text))


def _parse_database(problems: _Problems, data: Any) -> str:
    text = dburl.DEFAULT if data is None else data
    try:
        dburl.parse(text)
    except dburl.DatabaseUrlError as exc:
        # The message never repeats the URL: it may hold a password.
        problems.add("database", str(exc))
        return dburl.DEFAULT
    return text


def _parse_control(problems: _Problems, base: Path, data: Any) -> ControlConfig:
    if data is None:
        return ControlConfig.default()
    if not isinstance(data, dict):
        problems.add("control", "must be a mapping with 'socket'")
        return ControlConfig.default()
    _unknown_keys(problems, "control", data, ("socket",))
    text = data.get("socket")
    if text is None:
        return ControlConfig.default()
    problem = _path_problem(text, "the path of the daemon's control socket")
    if problem:
        problems.add("control.socket", problem)
        return ControlConfig.default()
    path = _beside(base, text)
    if len(os.fsencode(path)) > SUN_PATH_MAX:
        problems.add("control.socket", f"{shown_path(path)} is longer than a Unix socket's path may be "
                                       f"({SUN_PATH_MAX} bytes)")
    return ControlConfig(path)


def _parse_metrics(problems: _Problems, data: Any) -> MetricsConfig:
    if data is None:
        return MetricsConfig(METRICS_LISTEN)
    if not isinstance(data, dict):
        problems.add("metrics", "must be a mapping with 'listen' (HOST:PORT, or null for no /metrics)")
        return MetricsConfig(METRICS_LISTEN)
    _unknown_keys(problems, "metrics", data, ("listen",))
    if "listen" in data and data["listen"] is None:
        return MetricsConfig(None)
    return MetricsConfig(_parse_listen(problems, "metrics", data, METRICS_LISTEN))


def _parse_ha(problems: _Problems, data: Any, database: str) -> HaConfig:
    if data is None:
        return HaConfig()
    if not isinstance(data, dict):
        problems.add("ha", "must be a mapping with 'enabled' and optionally 'node', 'lease_seconds', "
                           "'converge_timeout', 'settle_seconds'")
        return HaConfig()
    _unknown_keys(problems, "ha", data, ("enabled", "node", "lease_seconds", "converge_timeout", "settle_seconds"))
    enabled = data.get("enabled", False)
    if not isinstance(enabled, bool):
        problems.add("ha.enabled", f"must be true or false, not {shown(enabled)}")
        enabled = False
    node = data.get("node", "")
    if not isinstance(node, str) or len(node) > 200:
        problems.add("ha.node", "must be a name (text, 200 characters at most)")
        node = ""
    numbers = {}
    for key, default, low, high in (("lease_seconds", 2.0, 0.5, 60.0), ("converge_timeout", 120.0, 0.0, 3600.0),
                                    ("settle_seconds", 3.0, 0.0, 600.0)):
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            problems.add(f"ha.{key}", f"must be a number of seconds in {low:g}..{high:g}, not {shown(value)}")
            value = default
        numbers[key] = float(value)
    if enabled and dburl.parse(database).engine != "postgresql":
        # The lease lives in the database both daemons share: a SQLite file is one host's.
        problems.add("ha.enabled", "an HA pair needs PostgreSQL (database: postgresql://...): the master's lease "
                                   "is held there, and a SQLite file cannot be shared by two hosts")
    return HaConfig(enabled, node, numbers["lease_seconds"], numbers["converge_timeout"], numbers["settle_seconds"])


def _parse_web(problems: _Problems, base: Path, data: Any) -> WebConfig:
    if data is None:
        return WebConfig(WEB_LISTEN)
    if not isinstance(data, dict):
        problems.add("web", "must be a mapping with 'listen' and optionally 'tls'")
        return WebConfig(WEB_LISTEN)
    _unknown_keys(problems, "web", data, ("listen", "tls"))
    return WebConfig(_parse_listen(problems, "web", data, WEB_LISTEN),
                     _parse_tls(problems, base, "web.tls", data.get("tls"), _WEB_TLS))


def _check_listeners(problems: _Problems, listeners: list[tuple[str, Listen | None]]) -> None:
    """Two servers of one daemon cannot take one port (0.0.0.0 and :: take it on every address)."""
    seen: list[tuple[str, Listen]] = []
    for key, listen in listeners:
        if listen is None:
            continue
        for other_key, other in seen:
            if listen.port == other.port and (listen.host == other.host or {listen.host, other.host} & ANY_ADDRESS):
                problems.add(key, f"{listen.host}:{listen.port} is also {other_key}'s port")
                break
        seen.append((key, listen))


def _parse_dpid(problems: _Problems, key: str, value: Any) -> int:
    """From the file, a dpid comes as the text written (configyaml.RAW_TEXT); from parse()'s
    callers, it may be an int."""
    if value is None:
        problems.add(key, f"is required: {dpids.FORMS}")
        return 0
    if isinstance(value, str):
        try:
            value = dpids.parse(value)
        except dpids.DpidError as exc:
            problems.add(key, f"{shown(value.strip())} {exc}")
            return 0
    if not _is_int(value):
        what = shown(value) if kind(value) == "number" else f"a {kind(value)}"
        problems.add(key, f"must be {dpids.FORMS}, not {what}")
        return 0
    if not 0 < value <= MAX_DPID:
        problems.add(key, f"{shown(value)} is out of range 1..2^64-1")
    return value


def _parse_addresses(problems: _Problems, key: str, value: Any) -> tuple[Interface, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        problems.add(key, "must be a list of CIDR addresses such as 10.0.1.1/24")
        return ()
    result = []
    for i, text in enumerate(value):
        where = f"{key}[{i}]"
        if not isinstance(text, str) or "/" not in text:
            problems.add(where, f"{shown(text)} is not a CIDR address such as 10.0.1.1/24")
            continue
        if "%" in text:
            problems.add(where, f"{shown(text)} has a zone (%...): the port is its zone; write the address "
                                "alone")
            continue
        try:
            iface = ipaddress.ip_interface(text)
        except ValueError as exc:
            # ipaddress's reason repeats the value: only worth showing when that is short.
            reason = f": {exc}" if len(text) <= configyaml.SHOWN else ""
            problems.add(where, f"{shown(text)} is not a CIDR address{reason}")
            continue
        refusal = configaddr.refusal(iface)
        if refusal:
            problems.add(where, f"{configyaml.clip(text)} {refusal}")
            continue
        oddity = configaddr.oddity(iface)
        if oddity:
            problems.warn(where, f"{configyaml.clip(text)} {oddity}")
        result.append(iface)
    return tuple(result)


def _tap_problem(tap: Any) -> str | None:
    if tap is None or tap == "":
        return "is required: the TAP interface name"
    if isinstance(tap, str) and len(tap.encode()) > IFNAMSIZ:
        return f"{shown(tap)} is longer than Linux's {IFNAMSIZ}-character limit"
    problem = _name_problem(tap, "interface name", IFNAMSIZ)
    if problem:
        return problem
    if tap in RESERVED_IFNAMES:
        return f"{shown(tap)} cannot be a TAP: {RESERVED_IFNAMES[tap]}"
    return None


def _parse_port(problems: _Problems, where: str, number: Any, data: Any) -> PortConfig | None:
    if isinstance(number, str) and number.isascii() and number.isdigit():
        number = int(number)
    if not _is_int(number) or not 0 < number <= MAX_PORT:
        problems.add(child(where, number), "port numbers must be integers in 1..4294967039")
        return None
    key = f"{where}.{number}"
    if not isinstance(data, dict):
        problems.add(key, "must be a mapping with 'tap' and 'addresses'")
        return None
    _unknown_keys(problems, key, data, ("tap", "addresses", "vlans"))
    vlans = configvlan.parse(problems.add, key, data.get("vlans"), _tap_problem,
                             lambda k, v: _parse_addresses(problems, k, v))
    tap = data.get("tap")
    addresses = _parse_addresses(problems, f"{key}.addresses", data.get("addresses"))
    if tap is None and data.get("vlans"):
        if addresses:
            problems.add(f"{key}.addresses", "untagged addresses need the port's own 'tap'")
        return PortConfig(number, None, addresses, vlans)
    problem = _tap_problem(tap)
    if problem:
        problems.add(f"{key}.tap", problem)
        tap = tap if isinstance(tap, str) else ""
    return PortConfig(number, tap, addresses, vlans)


def _parse_bird(problems: _Problems, base: Path, key: str, data: Any) -> BirdConfig | None:
    if data is None:
        return None
    if not isinstance(data, dict):
        problems.add(key, "must be a mapping with 'config'")
        return None
    _unknown_keys(problems, key, data, ("config",))
    path = data.get("config")
    problem = _path_problem(path, "the path of a BIRD 2 config file")
    if problem:
        problems.add(f"{key}.config", problem)
        return None
    resolved = _beside(base, path)
    problem = _file_problem(resolved)
    if problem:
        problems.add(f"{key}.config", problem)
    return BirdConfig(resolved)


def _parse_router(problems: _Problems, base: Path, name: Any, data: Any) -> RouterConfig | None:
    key = key_path("routers", name)
    # The name becomes the router's run directory, and the netns /run/netns/NETNS.
    problem = _name_problem(name, "router name")
    if problem:
        problems.add(key, problem)
        return None
    if not isinstance(data, dict):
        problems.add(key, "must be a mapping with dpid, netns and ports")
        return None
    _unknown_keys(problems, key, data, ("dpid", "netns", "ports", "bird"))
    dpid = _parse_dpid(problems, f"{key}.dpid", data.get("dpid"))
    netns = data.get("netns", name)
    problem = _name_problem(netns, "network namespace name")
    if problem:
        problems.add(f"{key}.netns", problem)
        netns = name
    ports_data = data.get("ports")
    ports: list[PortConfig] = []
    if not isinstance(ports_data, dict) or not ports_data:
        problems.add(f"{key}.ports", "is required: a mapping of switch port number to {tap, addresses}")
    else:
        for number, port_data in ports_data.items():
            port = _parse_port(problems, f"{key}.ports", number, port_data)
            if port is None:
                continue
            if any(p.number == port.number for p in ports):
                # From a file the YAML reader has refused this already; parse() may get a dict.
                problems.add(child(f"{key}.ports", number), f"port {port.number} is given twice")
                continue
            ports.append(port)
    bird = _parse_bird(problems, base, f"{key}.bird", data.get("bird"))
    return RouterConfig(name, dpid, netns, tuple(sorted(ports, key=lambda p: p.number)), bird)


def _check_unique(problems: _Problems, routers: list[RouterConfig]) -> None:
    seen_dpid: dict[int, str] = {}
    seen_netns: dict[str, str] = {}
    for router in routers:
        if not 0 < router.dpid <= MAX_DPID:
            pass  # already reported as invalid
        elif router.dpid in seen_dpid:
            problems.add(f"routers.{router.name}.dpid",
                         f"{router.dpid:#x} is also the dpid of router {seen_dpid[router.dpid]}")
        else:
            seen_dpid[router.dpid] = router.name
        if router.netns in seen_netns:
            problems.add(f"routers.{router.name}.netns",
                         f"{router.netns!r} is also the netns of router {seen_netns[router.netns]}")
        seen_netns.setdefault(router.netns, router.name)
        _check_ports(problems, router)


def _check_ports(problems: _Problems, router: RouterConfig) -> None:
    """Within one router (one netns, one routing table): TAPs, addresses and subnets apart, VLANs'
    included (a router's TAP names are its netns's; another router may reuse them)."""
    seen_tap: dict[str, PortTap] = {}
    seen_addr: dict[Any, PortTap] = {}
    distinct: list[tuple[PortTap, Interface]] = []
    for port_tap in router.taps:
        where = configvlan.key_of(router.name, port_tap)
        if port_tap.tap in seen_tap:
            problems.add(f"{where}.tap", f"{port_tap.tap!r} is also the TAP of {seen_tap[port_tap.tap].label}")
        seen_tap.setdefault(port_tap.tap, port_tap)
        for iface in port_tap.addresses:
            if iface.ip in seen_addr:
                problems.add(f"{where}.addresses",
                             f"{iface.ip} is also an address of {seen_addr[iface.ip].label}")
            else:
                distinct.append((port_tap, iface))
            seen_addr.setdefault(iface.ip, port_tap)
    for overlap in configaddr.overlaps(distinct):
        where = f"{configvlan.key_of(router.name, overlap.port)}.addresses"
        if overlap.host:
            problems.warn(where, f"{overlap.address} is inside the subnet {overlap.with_.network} of "
                                 f"{overlap.other.label}, whose TAP answers ARP and ND for it as well")
        else:
            problems.add(where, f"{overlap.address} overlaps {overlap.with_} of {overlap.other.label}: "
                                "one routing table cannot reach a subnet through two ports")


def parse(data: Any, path: Path) -> Config:
    """Validate already-loaded YAML data; raise ConfigError listing every problem."""
    return _parse(data, path, _Problems(path))


def _parse(data: Any, path: Path, problems: _Problems) -> Config:
    if not isinstance(data, dict):
        problems.add("(top)", "the file must be a mapping with 'openflow' and 'routers'")
        raise ConfigError(problems.items)
    _unknown_keys(problems, "", data, ("openflow", "routers", "database", "control", "metrics", "web", "ha"))
    listen, tls = _parse_openflow(problems, path.parent, data.get("openflow"))
    database = _parse_database(problems, data.get("database"))
    control = _parse_control(problems, path.parent, data.get("control"))
    metrics = _parse_metrics(problems, data.get("metrics"))
    web = _parse_web(problems, path.parent, data.get("web"))
    ha = _parse_ha(problems, data.get("ha"), database)
    _check_listeners(problems, [("openflow.listen", listen), ("metrics.listen", metrics.listen),
                                ("web.listen", web.listen)])
    routers: list[RouterConfig] = []
    routers_data = data.get("routers")
    if not isinstance(routers_data, dict) or not routers_data:
        problems.add("routers", "is required: a mapping of router name to its settings")
    else:
        for name, router_data in routers_data.items():
            router = _parse_router(problems, path.parent, name, router_data)
            if router is not None:
                routers.append(router)
    _check_unique(problems, routers)
    if problems.items:
        raise ConfigError(problems.items)
    return Config(path, listen, tuple(routers), tls, tuple(problems.warnings), database, control, metrics, web,
                  ha)


def load(path: str | Path) -> Config:
    """Read and validate a config file: every problem, or ConfigError."""
    path = Path(path)
    try:
        document = configyaml.read(path)
    except configyaml.FileProblem as exc:
        raise ConfigError([f"{path}: {exc}"]) from None
    problems = _Problems(path.resolve())
    for key, problem in document.problems:
        problems.add(key, problem)
    return _parse(document.data, path.resolve(), problems)
