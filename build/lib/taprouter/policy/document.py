"""Policies as fields (model.parse's inverse), as a YAML file (export, import) and as a difference.

The file maps each router to the list of its policies; importing it makes each router it names hold
exactly those policies (a router given as [] holds none), and leaves the other routers alone:

    policies:
      r1:
      - name: no-telnet
        priority: 200
        dst: 10.0.2.0/24
        proto: tcp
        dport: 23
        action: drop
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from .. import configyaml
from ..configyaml import Index, key_path
from .model import FIELDS, Policy, PolicyError, PortRange, parse, proto_name

BOUNDS = configyaml.Bounds(max_bytes=64 << 20, max_depth=8, max_values=4_000_000, kind="a policy file",
                           usual_size="a policy file takes about 150 bytes a policy", usual_depth=4,
                           usual_values="about ten a policy")
HEADER = "# taprouter policies: `taprouter policy import FILE` makes each router listed hold exactly these.\n"
Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def fields(policy: Policy) -> dict[str, Any]:
    """The fields that parse() reads back as this policy: the set ones, in FIELDS order, as YAML and
    JSON values (the audit log and the web UI's forms use them too)."""
    m = policy.match
    values: dict[str, Any] = {
        "priority": policy.priority,
        "in_port": list(m.in_ports) or None,
        "src": str(m.src) if m.src is not None else None,
        "dst": str(m.dst) if m.dst is not None else None,
        "proto": proto_name(m.proto) if m.proto is not None else None,
        "sport": _port(m.sport),
        "dport": _port(m.dport),
        "icmp_type": m.icmp_type,
        "action": policy.action.value,
        "via": str(policy.via) if policy.via is not None else None,
        "rate": str(policy.rate) if policy.rate is not None else None,
        "to_router": True if policy.to_router else None,
        "idle_timeout": policy.idle_timeout,
        "hard_timeout": policy.hard_timeout,
        "enabled": False if not policy.enabled else None,
        "comment": policy.comment or None,
    }
    return {name: values[name] for name in FIELDS if values[name] is not None}


def _port(ports: PortRange | None) -> int | str | None:
    if ports is None:
        return None
    return ports.low if ports.low == ports.high else str(ports)


def same(a: Policy, b: Policy) -> bool:
    """Equal as configured: the store's id aside."""
    return replace(a, id=None) == replace(b, id=None)


def export(by_router: Mapping[str, Iterable[dict[str, Any]]]) -> str:
    """The YAML file of each router's policies, given as {"name": ..., **fields}; deterministic:
    routers by name, each one's policies highest priority first, then by name."""
    document = {"policies": {
        router: sorted(items, key=lambda item: (-item.get("priority", 0), item["name"]))
        for router, items in sorted(by_router.items())
    }}
    return HEADER + yaml.dump(document, Dumper=Dumper, sort_keys=False, default_flow_style=False, width=200,
                              allow_unicode=True)


def read(path: Path) -> dict[str, list[Policy]]:
    """A policy file's policies by router, each parsed; PolicyError names the key at fault
    (policies.r1[3].dport), or `file` when the file cannot be read as YAML at all."""
    try:
        document = configyaml.read(path, BOUNDS)
    except configyaml.FileProblem as exc:
        raise PolicyError("file", f"{path}: {exc}") from None
    if document.problems:
        key, problem = document.problems[0]
        raise PolicyError(key, problem)
    return from_data(document.data)


def from_data(data: Any) -> dict[str, list[Policy]]:
    if not isinstance(data, dict) or set(data) != {"policies"} or not isinstance(data["policies"], dict):
        raise PolicyError("policies", "the file must be a mapping with one key, policies: a mapping of "
                                      "router name to a list of policies")
    result: dict[str, list[Policy]] = {}
    for router, items in data["policies"].items():
        where = key_path("policies", router)
        if not isinstance(router, str):
            raise PolicyError(where, "a router's name must be text")
        if items is None:
            items = []
        if not isinstance(items, list):
            raise PolicyError(where, "must be a list of policies, each a mapping with name and its fields")
        policies: list[Policy] = []
        seen: dict[str, int] = {}
        for i, item in enumerate(items):
            at = key_path("policies", router, Index(i))
            if not isinstance(item, dict):
                raise PolicyError(at, "must be a mapping with name and the policy's fields")
            values = dict(item)
            try:
                policy = parse(router, values.pop("name", None), values)
            except PolicyError as exc:
                raise exc.under(at) from None
            if policy.name in seen:
                raise PolicyError(f"{at}.name", f"{policy.name!r} is also the name of "
                                                f"{key_path('policies', router, Index(seen[policy.name]))}")
            seen[policy.name] = i
            policies.append(policy)
        result[router] = policies
    return result


@dataclass(frozen=True)
class Difference:
    """What an import changes: policies added, changed (before, after; after keeps before's id) and
    deleted, each ordered by router and name."""

    adds: tuple[Policy, ...] = ()
    changes: tuple[tuple[Policy, Policy], ...] = ()
    deletes: tuple[Policy, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.adds or self.changes or self.deletes)

    def names(self) -> dict[str, list[str]]:
        """The names changed, by router (what the daemon is told)."""
        out: dict[str, list[str]] = {}
        for policy in (*self.adds, *(after for _, after in self.changes), *self.deletes):
            out.setdefault(policy.router, []).append(policy.name)
        return {router: sorted(names) for router, names in sorted(out.items())}


def difference(current: Mapping[str, Iterable[Policy]], desired: Mapping[str, Iterable[Policy]]) -> Difference:
    """From the routers' current policies to the desired ones, for the routers `desired` names."""
    adds, changes, deletes = [], [], []
    for router in sorted(desired):
        have = {p.name: p for p in current.get(router, ())}
        want = {p.name: p for p in desired[router]}
        for name in sorted(want.keys() | have.keys()):
            before, after = have.get(name), want.get(name)
            if before is None:
                adds.append(after)
            elif after is None:
                deletes.append(before)
            elif not same(before, after):
                changes.append((before, replace(after, id=before.id)))
    return Difference(tuple(adds), tuple(changes), tuple(deletes))
