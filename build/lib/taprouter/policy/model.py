"""A policy as every part sees it: typed, frozen, validated once, whatever it was read from.

A policy belongs to one router and has a name unique there, a priority (a higher one wins), a match,
an action and its argument, a scope (routed traffic, or also traffic to the router itself), an
enabled flag, optional idle and hard timeouts and a comment. `parse` builds one from text fields
(command-line flags, a YAML file, a form) and raises PolicyError naming the field at fault; the
store and the planner only ever see a Policy.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any, Mapping

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

PRIORITY_MAX = 999  # a policy's priority: 0 to this, the higher first
TIMEOUT_MAX = 0xFFFF  # OpenFlow's idle and hard timeouts are 16-bit seconds
PORT_MAX = 0xFFFFFF00 - 1  # the highest switch port number (OpenFlow 1.3)
NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:\-]{0,63}")
PROTOCOLS = {"icmp": 1, "tcp": 6, "udp": 17, "icmpv6": 58, "sctp": 132}
_PORTED = {6, 17, 132}  # protocols whose ports OpenFlow matches
ICMP, ICMPV6 = 1, 58


class Action(Enum):
    DROP = "drop"
    PERMIT = "permit"  # continue to routing: an exception carved out of a wider drop
    FORWARD = "forward"  # policy-based routing via a next hop
    POLICE = "police"  # a meter, then routed as usual


class RateUnit(Enum):
    PPS = "pps"
    KBPS = "kbps"


class State(Enum):
    """Where a policy stands on its switch."""

    INSTALLED = "installed"
    PENDING = "pending"  # enabled, not (yet) on the switch: no switch, or its next hop unresolved
    DISABLED = "disabled"
    EXPIRED = "expired"  # a timeout fired; it comes back only when re-enabled
    FAILED = "failed"  # the switch refused it; `error` says why


class PolicyError(ValueError):
    """A policy that cannot be: `field` names the flag or key at fault."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")

    def under(self, where: str) -> "PolicyError":
        """The same problem, its field placed under a key: policies.r1[3] and dport."""
        return PolicyError(f"{where}.{self.field}", self.message)


@dataclass(frozen=True, order=True)
class PortRange:
    low: int
    high: int

    def __str__(self) -> str:
        return str(self.low) if self.low == self.high else f"{self.low}-{self.high}"


@dataclass(frozen=True)
class Rate:
    value: int
    unit: RateUnit

    def __str__(self) -> str:
        return f"{self.value}{self.unit.value}"


@dataclass(frozen=True)
class Match:
    """What a policy matches; every field optional. Ports need tcp, udp or sctp; icmp_type needs
    icmp or icmpv6."""

    in_ports: tuple[int, ...] = ()
    src: IPNetwork | None = None
    dst: IPNetwork | None = None
    proto: int | None = None
    sport: PortRange | None = None
    dport: PortRange | None = None
    icmp_type: int | None = None

    def versions(self) -> tuple[int, ...]:
        """The IP versions the match can see: one when an address or protocol says which, else both."""
        for net in (self.src, self.dst):
            if net is not None:
                return (net.version,)
        if self.proto == ICMP:
            return (4,)
        if self.proto == ICMPV6:
            return (6,)
        return (4, 6)

    def as_dict(self) -> dict[str, Any]:
        """The set fields as JSON-ready text and numbers (`policy list --json`'s `match`)."""
        out: dict[str, Any] = {}
        if self.in_ports:
            out["in_ports"] = list(self.in_ports)
        for name in ("src", "dst", "sport", "dport"):
            value = getattr(self, name)
            if value is not None:
                out[name] = str(value)
        if self.proto is not None:
            out["proto"] = proto_name(self.proto)
        if self.icmp_type is not None:
            out["icmp_type"] = self.icmp_type
        return out


@dataclass(frozen=True)
class Policy:
    router: str
    name: str
    match: Match = field(default_factory=Match)
    action: Action = Action.DROP
    priority: int = 100
    via: IPAddress | None = None  # FORWARD's next hop
    rate: Rate | None = None  # POLICE's rate
    to_router: bool = False  # also traffic addressed to the router itself
    enabled: bool = True
    idle_timeout: int | None = None
    hard_timeout: int | None = None
    comment: str = ""
    id: int | None = None  # the store's; flows on the switch carry it in their cookie

    def key(self) -> tuple[str, str]:
        return (self.router, self.name)

    def versions(self) -> tuple[int, ...]:
        """The IP versions it applies to: a FORWARD goes to one next hop, of one family."""
        return (self.via.version,) if self.via is not None else self.match.versions()


@dataclass(frozen=True)
class Status:
    """A policy's runtime state as the daemon last wrote it (or as derived when it has not)."""

    policy_id: int
    state: State
    error: str = ""
    installed_at: datetime | None = None
    expired_at: datetime | None = None
    packets: int = 0
    bytes: int = 0


def overlaps(a: Policy, b: Policy, own: frozenset[IPAddress] = frozenset()) -> bool:
    """Whether some packet matches both policies, so that at one priority the switch could apply
    either. Exact over IP version, in_ports, prefixes, protocol, port ranges and ICMP type.

    The scope matters only where the two matches meet on one destination address, the router's
    own (`own`): a routed packet never has it as its destination, so unless both policies also see
    traffic to the router (to_router), no packet matches both. Elsewhere every scope takes in routed
    traffic, and the scopes always share it."""
    if not set(a.versions()) & set(b.versions()):
        return False
    ma, mb = a.match, b.match
    if ma.in_ports and mb.in_ports and not set(ma.in_ports) & set(mb.in_ports):
        return False
    if ma.proto is not None and mb.proto is not None and ma.proto != mb.proto:
        return False
    if ma.icmp_type is not None and mb.icmp_type is not None and ma.icmp_type != mb.icmp_type:
        return False
    for ra, rb in ((ma.sport, mb.sport), (ma.dport, mb.dport)):
        if ra is not None and rb is not None and (ra.high < rb.low or rb.high < ra.low):
            return False
    if not (_nets_meet(ma.src, mb.src) and _nets_meet(ma.dst, mb.dst)):
        return False
    if a.to_router and b.to_router:
        return True
    both = _narrower(ma.dst, mb.dst)
    return not (both is not None and both.num_addresses == 1 and both.network_address in own)


def _nets_meet(a: IPNetwork | None, b: IPNetwork | None) -> bool:
    """Two prefixes share an address exactly when one holds the other (None is every address)."""
    if a is None or b is None:
        return True
    return a.version == b.version and (a.subnet_of(b) or b.subnet_of(a))


def _narrower(a: IPNetwork | None, b: IPNetwork | None) -> IPNetwork | None:
    """Of two prefixes that meet, the one inside the other: where they meet."""
    if a is None or b is None:
        return a if b is None else b
    return a if a.prefixlen >= b.prefixlen else b


def proto_name(number: int) -> str | int:
    for name, value in PROTOCOLS.items():
        if value == number:
            return name
    return number


# --- from text ------------------------------------------------------------------------------------

FIELDS = ("priority", "in_port", "src", "dst", "proto", "sport", "dport", "icmp_type", "action", "via",
          "rate", "to_router", "idle_timeout", "hard_timeout", "enabled", "comment")


def parse(router: str, name: str, fields: Mapping[str, Any]) -> Policy:
    """A Policy from text or YAML values keyed as in FIELDS (`in_port` a number, a list or "1,2");
    raises PolicyError naming the first field at fault. A field absent or None is unset."""
    unknown = sorted(set(fields) - set(FIELDS))
    if unknown:
        raise PolicyError(unknown[0], f"unknown field (known: {', '.join(FIELDS)})")
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise PolicyError("name", f"{_shown(name)} is not a policy name: letters, digits, '_', '.', ':' and '-', "
                                  "at most 64, not starting with '.', ':' or '-'")
    get = fields.get
    src = _network("src", get("src"))
    dst = _network("dst", get("dst"))
    if src is not None and dst is not None and src.version != dst.version:
        raise PolicyError("dst", f"{dst} is IPv{dst.version}, but src {src} is IPv{src.version}")
    proto = _proto(get("proto"))
    family = src.version if src is not None else dst.version if dst is not None else None
    if proto in (ICMP, ICMPV6) and family is not None and family != (4 if proto == ICMP else 6):
        raise PolicyError("proto", f"{proto_name(proto)} does not go with IPv{family} addresses")
    sport, dport = _ports("sport", get("sport"), proto), _ports("dport", get("dport"), proto)
    icmp_type = _int("icmp_type", get("icmp_type"), 0, 255)
    if icmp_type is not None and proto not in (ICMP, ICMPV6):
        raise PolicyError("icmp_type", "needs --proto icmp or icmpv6")
    match = Match(_in_ports(get("in_port")), src, dst, proto, sport, dport, icmp_type)
    action = _choice("action", get("action"), Action)
    if action is None:
        raise PolicyError("action", f"is required: one of {', '.join(a.value for a in Action)}")
    via = _address("via", get("via"))
    rate = _rate(get("rate"))
    if action is Action.FORWARD:
        if via is None:
            raise PolicyError("via", "is required with action forward: the next hop's address")
        if via.version not in match.versions():
            raise PolicyError("via", f"{via} is IPv{via.version}, but the match is IPv{match.versions()[0]} only")
    elif via is not None:
        raise PolicyError("via", "goes only with action forward")
    if action is Action.POLICE and rate is None:
        raise PolicyError("rate", "is required with action police: N pps or N kbps")
    if action is not Action.POLICE and rate is not None:
        raise PolicyError("rate", "goes only with action police")
    priority = _int("priority", get("priority"), 0, PRIORITY_MAX)
    comment = get("comment") or ""
    if not isinstance(comment, str):
        raise PolicyError("comment", "must be text")
    return Policy(router=router, name=name, match=match, action=action,
                  priority=100 if priority is None else priority, via=via, rate=rate,
                  to_router=boolean("to_router", get("to_router"), False), enabled=boolean("enabled", get("enabled"), True),
                  idle_timeout=_int("idle_timeout", get("idle_timeout"), 1, TIMEOUT_MAX),
                  hard_timeout=_int("hard_timeout", get("hard_timeout"), 1, TIMEOUT_MAX), comment=comment)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


def _int(name: str, value: Any, low: int, high: int) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise PolicyError(name, f"{_shown(value)} is not a number")
    if isinstance(value, str):
        if not (value.isascii() and value.strip().isdigit()):
            raise PolicyError(name, f"{_shown(value)} is not a number")
        value = int(value)
    if not low <= value <= high:
        raise PolicyError(name, f"{value} is not in {low}..{high}")
    return value


def boolean(name: str, value: Any, default: bool) -> bool:
    """yes/no, true/false, on/off, 1/0 (or a YAML boolean); PolicyError naming `name` otherwise."""
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
        return value.lower() in ("true", "yes", "on", "1")
    raise PolicyError(name, f"{_shown(value)} is not true or false")


def _choice(name: str, value: Any, kind):
    if value is None or value == "":
        return None
    try:
        return kind(str(value).lower())
    except ValueError:
        raise PolicyError(name, f"{_shown(value)} is not one of {', '.join(k.value for k in kind)}") from None


def _network(name: str, value: Any) -> IPNetwork | None:
    if value is None or value == "":
        return None
    text = str(value).strip()
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        reason = str(exc)
    try:
        loose = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise PolicyError(name, f"{_shown(value)} is not an address or prefix ({reason})") from None
    raise PolicyError(name, f"{_shown(value)} has host bits set: its network is {loose}")


def _address(name: str, value: Any) -> IPAddress | None:
    if value is None or value == "":
        return None
    try:
        return ipaddress.ip_address(str(value).strip())
    except ValueError:
        raise PolicyError(name, f"{_shown(value)} is not an IP address") from None


def _proto(value: Any) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.lower() in PROTOCOLS:
        return PROTOCOLS[value.lower()]
    try:
        return _int("proto", value, 0, 255)
    except PolicyError:
        raise PolicyError("proto", f"{_shown(value)} is not {', '.join(PROTOCOLS)} or a number 0..255") from None


def _ports(name: str, value: Any, proto: int | None) -> PortRange | None:
    if value is None or value == "":
        return None
    if proto not in _PORTED:
        raise PolicyError(name, "needs --proto tcp, udp or sctp")
    text = str(value).strip()
    low_text, dash, high_text = text.partition("-")
    low = _int(name, low_text, 0, 0xFFFF)
    high = _int(name, high_text, 0, 0xFFFF) if dash else low
    if low is None or high is None:
        raise PolicyError(name, f"{_shown(value)} is not a port or a range such as 1024-2047")
    if low > high:
        raise PolicyError(name, f"{text}: the range's ends are swapped (write {high}-{low})")
    return PortRange(low, high)


def _in_ports(value: Any) -> tuple[int, ...]:
    if value is None or value == "" or value == []:
        return ()
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    ports = sorted({_int("in_port", item.strip() if isinstance(item, str) else item, 1, PORT_MAX) for item in items})
    return tuple(p for p in ports if p is not None)


def _rate(value: Any) -> Rate | None:
    if value is None or value == "":
        return None
    m = re.fullmatch(r"\s*(\d+)\s*(pps|kbps)\s*", str(value).lower())
    if not m or int(m.group(1)) == 0:
        raise PolicyError("rate", f"{_shown(value)} is not a rate such as 500pps or 2000kbps")
    return Rate(int(m.group(1)), RateUnit(m.group(2)))
