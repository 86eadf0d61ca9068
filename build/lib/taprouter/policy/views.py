"""Policies with their state as `policy list` and `policy show` print them: JSON objects and text."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .model import Action, Policy, State, Status

MATCH_FIELDS = ("in_ports", "src", "dst", "proto", "sport", "dport", "icmp_type")


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def as_json(policy: Policy, status: Status) -> dict[str, Any]:
    """One object of `policy list --json` (and `policy show --json`)."""
    return {
        "id": policy.id, "router": policy.router, "name": policy.name, "priority": policy.priority,
        "match": policy.match.as_dict(), "action": policy.action.value,
        "via": str(policy.via) if policy.via is not None else None,
        "rate": str(policy.rate) if policy.rate is not None else None,
        "to_router": policy.to_router, "enabled": policy.enabled,
        "idle_timeout": policy.idle_timeout, "hard_timeout": policy.hard_timeout, "comment": policy.comment,
        "state": status.state.value, "error": status.error or None,
        "installed_at": _time(status.installed_at), "expired_at": _time(status.expired_at),
        "packets": status.packets, "bytes": status.bytes,
    }


def invalid_json(policy_id: int, router: str, name: str, fields: dict[str, Any], error: str) -> dict[str, Any]:
    """A row plain SQL made invalid: the same keys, its values as stored, state failed."""
    in_ports = fields.get("in_port")
    match = {k: (in_ports if k == "in_ports" else fields.get(k)) for k in MATCH_FIELDS}
    return {
        "id": policy_id, "router": router, "name": name, "priority": fields.get("priority"),
        "match": {k: v for k, v in match.items() if v is not None}, "action": fields.get("action"),
        "via": fields.get("via"), "rate": fields.get("rate"), "to_router": bool(fields.get("to_router")),
        "enabled": fields.get("enabled", True), "idle_timeout": fields.get("idle_timeout"),
        "hard_timeout": fields.get("hard_timeout"), "comment": fields.get("comment", ""),
        "state": State.FAILED.value, "error": f"the stored row is invalid: {error}", "installed_at": None,
        "expired_at": None, "packets": 0, "bytes": 0,
    }


def match_text(item: dict[str, Any]) -> str:
    """`dst=10.0.2.0/24 proto=tcp dport=23`, and `to_router` when it also sees the router's traffic."""
    parts = [f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in item["match"].items()]
    if item["to_router"]:
        parts.append("to_router")
    return " ".join(parts) or "any"


def action_text(item: dict[str, Any]) -> str:
    if item["action"] == Action.FORWARD.value:
        return f"forward via {item['via']}"
    if item["action"] == Action.POLICE.value:
        return f"police {item['rate']}"
    return str(item["action"])


def table(items: list[dict[str, Any]]) -> str:
    """`policy list`: one line a policy, columns aligned."""
    head = ("ROUTER", "NAME", "PRIO", "ACTION", "MATCH", "STATE", "PACKETS", "BYTES")
    rows = [head] + [(i["router"], i["name"], str(i["priority"]), action_text(i), match_text(i), i["state"],
                      str(i["packets"]), str(i["bytes"])) for i in items]
    widths = [max(len(row[c]) for row in rows) for c in range(len(head))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines) if items else "no policies"


def detail(item: dict[str, Any]) -> str:
    """`policy show`: every field, one a line."""
    timeouts = ", ".join(f"{k} {item[f'{k}_timeout']} s" for k in ("idle", "hard") if item[f"{k}_timeout"])
    lines = [
        ("policy", f"{item['name']} on router {item['router']} (id {item['id']})"),
        ("priority", item["priority"]),
        ("match", match_text(item)),
        ("action", action_text(item)),
        ("scope", "routed traffic and traffic to the router" if item["to_router"] else "routed traffic"),
        ("enabled", "yes" if item["enabled"] else "no"),
        ("timeouts", timeouts or "none"),
        ("comment", item["comment"] or "-"),
        ("state", item["state"]),
        ("error", item["error"] or "-"),
        ("installed at", item["installed_at"] or "-"),
        ("expired at", item["expired_at"] or "-"),
        ("packets", item["packets"]),
        ("bytes", item["bytes"]),
    ]
    return "\n".join(f"{label + ':':<14}{value}" for label, value in lines)
