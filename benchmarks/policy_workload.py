"""The policy stage's workload, with no I/O: a router's initial policies, a stream of changes to them
as an operator makes them, and what the switch must hold of one policy (benchmarks/policies.py runs it).

Every policy matches its own /32, so no two ever overlap, whatever their priorities: the store
refuses none of the changes, and each change moves one policy's flows only. The mix: one in twenty
forwards (policy-based routing to the router's next hop, a group each), one in twenty polices (a
meter each), one in twenty permits, the rest drop; one in ten is TCP on ports 1024-65535 (six
flows), one in seven comes in on port 1 only.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Iterable, Mapping

from taprouter.controller.openflow import pipeline
from taprouter.policy.model import Action, Policy

VIA = "10.0.2.2"  # the bench's h2, a resolved neighbour on port 2
PORTS = "1024-65535"


class Kind(Enum):
    SET_PRIORITY = "set priority"
    SET_MATCH = "set match"
    DISABLE = "disable"
    ENABLE = "enable"
    DELETE = "del"
    ADD = "add"


# One round of changes: each kind once, a policy disabled before one is enabled again.
ROUND = (Kind.SET_PRIORITY, Kind.DISABLE, Kind.SET_MATCH, Kind.ENABLE, Kind.DELETE, Kind.ADD)


@dataclass(frozen=True)
class Change:
    kind: Kind
    name: str
    fields: Mapping[str, Any] = field(default_factory=dict)  # set's and add's, as model.parse takes them


def destination(index: int) -> str:
    """The index-th /32 of 172.16.0.0/12, one policy's own."""
    return f"172.{16 + index // 65536}.{index // 256 % 256}.{index % 256}/32"


def fields(index: int) -> dict[str, Any]:
    """The index-th initial policy's fields."""
    out: dict[str, Any] = {"priority": 100 + index % 100, "dst": destination(index)}
    kind = index % 20
    if kind == 0:
        out.update(action="forward", via=VIA)
    elif kind == 1:
        out.update(action="police", rate="1000pps")
    else:
        out["action"] = "permit" if kind == 2 else "drop"
    if index % 10 == 3:
        out.update(proto="tcp", dport=PORTS)
    if index % 7 == 5:
        out["in_port"] = [1]
    return out


def initial(count: int) -> list[dict[str, Any]]:
    """The import file's list for one router: `count` policies named p00000, p00001, ..."""
    return [{"name": f"p{i:05d}", **fields(i)} for i in range(count)]


class Workload:
    """Changes one after another, each to a policy picked at random among those it may apply to.
    It follows what it asked for (the bench checks that the store did each)."""

    def __init__(self, count: int, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self.enabled = [f"p{i:05d}" for i in range(count)]
        self.disabled: list[str] = []
        self.priority = {f"p{i:05d}": 100 + i % 100 for i in range(count)}
        self.ported = {f"p{i:05d}" for i in range(count) if i % 10 == 3}
        self.fresh = count  # the next unused /32 (and new policy's number)
        self.done = 0

    def __iter__(self):
        return self

    def __next__(self) -> Change:
        kind = ROUND[self.done % len(ROUND)]
        self.done += 1
        if kind is Kind.ADD:
            name = f"n{self.fresh:05d}"
            change = Change(kind, name, {"action": "drop", "priority": 100, "dst": self._fresh()})
            self.enabled.append(name)
            self.priority[name] = 100
            return change
        if kind is Kind.ENABLE:
            name = self._take(self.disabled)
            self.enabled.append(name)
            return Change(kind, name)
        name = self.rng.choice(self.enabled)
        if kind is Kind.SET_PRIORITY:
            priority = self.rng.choice([p for p in range(1, 1000) if p != self.priority[name]])
            self.priority[name] = priority
            return Change(kind, name, {"priority": priority})
        if kind is Kind.SET_MATCH:
            # A new destination, and the port range put on or taken off: other flows, other count.
            ported = name not in self.ported
            self.ported.symmetric_difference_update({name})
            return Change(kind, name, {"dst": self._fresh(), "proto": "tcp" if ported else "",
                                       "dport": PORTS if ported else ""})
        self.enabled.remove(name)
        if kind is Kind.DISABLE:
            self.disabled.append(name)
        else:
            self.priority.pop(name)
            self.ported.discard(name)
        return Change(kind, name)

    def _take(self, names: list[str]) -> str:
        name = self.rng.choice(names)
        names.remove(name)
        return name

    def _fresh(self) -> str:
        self.fresh += 1
        return destination(self.fresh - 1)


# --- what the switch must hold --------------------------------------------------------------------

_VALUE = re.compile(r"(0x[0-9a-f]+|\d+)(?:/(0x[0-9a-f]+|\d+))?$")


def covered(text: str, bits: int = 16) -> set[int]:
    """The port numbers a printed `tcp_dst` match covers: `1024`, `0x400/0xfc00`."""
    found = _VALUE.match(text)
    if found is None:
        raise ValueError(f"not a port match: {text!r}")
    value = int(found.group(1), 0)
    mask = int(found.group(2), 0) if found.group(2) else (1 << bits) - 1
    return {port for port in range(1 << bits) if port & mask == value & mask}


def _expected_action(action: Action) -> str:
    return {Action.DROP: "drop", Action.PERMIT: "goto_table", Action.POLICE: "meter",
            Action.FORWARD: "group"}[action]


def mismatch(policy: Policy | None, flows: Iterable) -> str | None:
    """Why the switch's flows of one policy (netns_tests/ofctl.py's Flows, cookie matched) are not
    what the policy says, or None. Checked from the policy's own fields, not the planner's output:
    a disabled or deleted policy has none; an enabled one covers its destination, its in-ports and
    exactly its port range, at its priority, with its action's kind."""
    flows = list(flows)
    if policy is None or not policy.enabled:
        return None if not flows else f"{len(flows)} flows left on the switch"
    if not flows:
        return "no flows on the switch"
    base = pipeline.PRIO_POLICY_TO_ROUTER if policy.to_router else pipeline.PRIO_POLICY_ROUTED
    m = policy.match
    for flow in flows:
        if flow.priority != base + policy.priority:
            return f"priority {flow.priority}, not {base + policy.priority}"
        if flow.destination != m.dst:
            return f"destination {flow.destination}, not {m.dst}"
        if _expected_action(policy.action) not in flow.actions:
            return f"actions {flow.actions!r} for a {policy.action.value}"
    ports = {f.match.get("in_port") for f in flows}
    want_ports = {str(p) for p in m.in_ports} or {None}
    if ports != want_ports:
        return f"in_ports {sorted(map(str, ports))}, not {sorted(map(str, want_ports))}"
    if m.dport is None:
        if len(flows) != 1 or "tcp_dst" in flows[0].match or "tp_dst" in flows[0].match:
            return f"{len(flows)} flows for a policy without ports"
        return None
    spans = []
    for flow in flows:
        text = flow.match.get("tcp_dst") or flow.match.get("tp_dst")
        if not isinstance(text, str):
            return "a flow without the port match"
        spans.append(covered(text))
    union = set().union(*spans)
    if sum(map(len, spans)) != len(union) or union != set(range(m.dport.low, m.dport.high + 1)):
        return f"the flows cover {len(union)} ports, not {m.dport}"
    return None
