"""The switch as `ovs-ofctl -O OpenFlow13` prints it: flows, groups and counters, parsed in one place."""

from __future__ import annotations

import ipaddress
import re
import subprocess
from dataclasses import dataclass, field
from typing import Iterable, Mapping

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_PRIORITY = 32768  # ovs-ofctl leaves `priority=` out when a flow has OpenFlow's default
DESTINATION_FIELDS = ("nw_dst", "ipv6_dst")  # a flow's destination: IPv4's field, IPv6's
# The flow_mod flags dump-flows prints as bare words before the match, each followed by a space.
FLAGS = frozenset({"send_flow_rem", "check_overlap", "reset_counts", "no_packet_counts", "no_byte_counts"})


# --- flows -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Flow:
    """One line of `dump-flows`. The counters and duration are None under `--no-stats`."""

    table: int
    priority: int
    cookie: int
    # Field -> value as printed ("in_port": "1", "nw_dst": "10.0.1.0/24"); the bare words that
    # stand for a protocol (ip, ipv6, arp, tcp6, icmp6, ...) map to True.
    match: Mapping[str, str | bool] = field(hash=False)
    actions: str
    n_packets: int | None
    n_bytes: int | None
    duration: float | None
    line: str

    @property
    def destination(self) -> Network | None:
        """nw_dst or ipv6_dst as a network; ovs-ofctl prints a /32 or a /128 as a bare address."""
        for name in DESTINATION_FIELDS:
            value = self.match.get(name)
            if isinstance(value, str):
                return ipaddress.ip_network(value)
        return None

    @property
    def group(self) -> int | None:
        """The group id if the actions are a single group action, else None."""
        m = re.fullmatch(r"group:(\d+)", self.actions)
        return int(m.group(1)) if m else None


def parse_flow(line: str) -> Flow | None:
    """One line of `dump-flows`; None for a line that is no flow (the reply's header).

    The line is `key=value, ` properties and bare flags (send_flow_rem, ...), each followed by a
    space, then the match, with no space inside, then ` actions=...`. The match is empty for a
    flow of the default priority that matches everything: then the last word before the actions
    is a property (ending in a comma) or a flag.
    """
    text = line.strip()
    head, sep, actions = ("", "actions=", text[len("actions="):]) if text.startswith("actions=") \
        else text.partition(" actions=")
    if not sep:
        return None
    tokens = head.split()
    match_text = tokens.pop() if tokens and not tokens[-1].endswith(",") and tokens[-1] not in FLAGS else ""
    props = dict(t.rstrip(",").partition("=")[::2] for t in tokens)
    match: dict[str, str | bool] = {}
    for part in match_text.split(",") if match_text else ():
        key, has_value, value = part.partition("=")
        match[key] = value if has_value else True
    priority = match.pop("priority", DEFAULT_PRIORITY)

    def count(name: str) -> int | None:
        return int(props[name]) if name in props else None

    return Flow(table=int(props.get("table", 0)), priority=int(priority), cookie=int(props.get("cookie", "0"), 0),
                match=match, actions=actions.strip(), n_packets=count("n_packets"), n_bytes=count("n_bytes"),
                duration=float(props["duration"].rstrip("s")) if "duration" in props else None, line=text)


def parse_flows(text: str) -> list[Flow]:
    return [flow for line in text.splitlines() if (flow := parse_flow(line)) is not None]


def with_destination(flows: Iterable[Flow], prefix: str) -> list[Flow]:
    """The flows whose nw_dst or ipv6_dst is `prefix` (a network, or an address for its /32 or /128)."""
    network = ipaddress.ip_network(prefix)
    return [flow for flow in flows if flow.destination == network]


# --- groups ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Group:
    """One line of `dump-groups`: its type, and each bucket's text after `bucket=`
    (e.g. `actions=dec_ttl,output:1`, or `weight:10,actions=output:1`)."""

    id: int
    type: str
    buckets: tuple[str, ...]
    line: str


def parse_groups(text: str) -> dict[int, Group]:
    groups = {}
    for line in text.splitlines():
        m = re.match(r"\s*group_id=(\d+),type=([\w-]+)(.*)$", line)
        if m:
            buckets = tuple(m.group(3).split(",bucket=")[1:])
            groups[int(m.group(1))] = Group(int(m.group(1)), m.group(2), buckets, line.strip())
    return groups


@dataclass(frozen=True)
class GroupStats:
    """One line of `dump-group-stats` (without its per-bucket counters)."""

    duration: float
    ref_count: int
    packet_count: int
    byte_count: int


def parse_group_stats(text: str) -> dict[int, GroupStats]:
    found = {}
    for m in re.finditer(r"group_id=(\d+),duration=([\d.]+)s,ref_count=(\d+),packet_count=(\d+),"
                         r"byte_count=(\d+)", text):
        found[int(m.group(1))] = GroupStats(float(m.group(2)), int(m.group(3)), int(m.group(4)), int(m.group(5)))
    return found


# --- counters --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Aggregate:
    """`dump-aggregate`: the sums over the flows asked for."""

    packet_count: int
    byte_count: int
    flow_count: int


def parse_aggregate(text: str) -> Aggregate:
    m = re.search(r"packet_count=(\d+) byte_count=(\d+) flow_count=(\d+)", text)
    if m is None:
        raise ValueError(f"no dump-aggregate reply in {text!r}")
    return Aggregate(*(int(x) for x in m.groups()))


@dataclass(frozen=True)
class PortStats:
    """One port of `dump-ports`; a counter the port does not keep (printed `?`) is None."""

    rx_packets: int | None
    rx_bytes: int | None
    rx_dropped: int | None
    rx_errors: int | None
    tx_packets: int | None
    tx_bytes: int | None
    tx_dropped: int | None
    tx_errors: int | None


def parse_ports(text: str) -> dict[int | str, PortStats]:
    """Port number (or a name such as LOCAL) -> its counters."""
    number = r"(\d+|\?)"
    pattern = (rf"port\s+(\S+): rx pkts={number}, bytes={number}, drop={number}, errs={number}.*\n"
               rf"\s+tx pkts={number}, bytes={number}, drop={number}, errs={number}")
    ports: dict[int | str, PortStats] = {}
    for m in re.finditer(pattern, text):
        port, *counters = m.groups()
        ports[int(port) if port.isdigit() else port] = PortStats(*(None if c == "?" else int(c) for c in counters))
    return ports


# --- asking the switch -----------------------------------------------------------------------

def ofctl(command: str, bridge: str, *args: str, check: bool = True) -> str:
    """`ovs-ofctl -O OpenFlow13 COMMAND BRIDGE ARGS...`'s output; with `check`, failing raises."""
    cmd = ["ovs-ofctl", "-O", "OpenFlow13", command, bridge, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


def _table(table: int | None) -> tuple[str, ...]:
    return (f"table={table}",) if table is not None else ()


def dump_flows(bridge: str, table: int | None = None, check: bool = True) -> str:
    return ofctl("dump-flows", bridge, *_table(table), check=check)


def flows(bridge: str, table: int | None = None, check: bool = True) -> list[Flow]:
    return parse_flows(dump_flows(bridge, table, check))


def groups(bridge: str) -> dict[int, Group]:
    """Every group. (Under OpenFlow 1.3, `dump-groups BRIDGE ID` prints every group as well.)"""
    return parse_groups(ofctl("dump-groups", bridge))


def group_stats(bridge: str) -> dict[int, GroupStats]:
    return parse_group_stats(ofctl("dump-group-stats", bridge))


def aggregate(bridge: str, table: int | None = None) -> Aggregate:
    return parse_aggregate(ofctl("dump-aggregate", bridge, *_table(table)))


def ports(bridge: str, port: int | None = None) -> dict[int | str, PortStats]:
    return parse_ports(ofctl("dump-ports", bridge, *([str(port)] if port is not None else [])))
