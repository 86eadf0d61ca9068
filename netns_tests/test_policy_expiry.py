"""A policy with a hard timeout expires on the switch: the store and the daemon show it as
`expired`, with when; its flows are gone and stay gone through the daemon's re-reads; `policy
enable` puts it back (for another timeout)."""

from __future__ import annotations

import time
from datetime import datetime


def expired_at(item: dict) -> float:
    assert item["state"] == "expired" and item["expired_at"], item
    return datetime.fromisoformat(item["expired_at"]).timestamp()


def test_a_hard_timeout_expires_a_policy_until_it_is_enabled_again(policy_lab):
    lab = policy_lab
    h1 = lab.host(1)
    added = time.time()
    pid = lab.add("brief", "--dst", "10.0.2.0/24", "--action", "drop", "--hard-timeout", "2")
    flows = lab.policy_flows(pid)
    assert flows and all("hard_timeout=2" in f.line and "send_flow_rem" in f.line for f in flows), lab.explain()

    lab.wait_flows(pid, present=False, timeout=10)
    item = lab.wait_state("brief", "expired")
    when = expired_at(item)
    assert added + 1.5 <= when <= time.time(), f"expired at {item['expired_at']}, added at {added}"
    assert abs(expired_at(lab.served()["brief"]) - when) < 1, lab.served()["brief"]

    # Not put back: not by the pass another policy's change causes, nor by the re-read of every
    # policy that follows when the daemon sees the store's generation moved. A writer's
    # notification carries the generation it moved, so the daemon re-reads nothing after
    # `policy add`; a change behind its back (plain SQL) makes it re-read everything.
    offset = len(lab.log_text())
    lab.add("other", "--dst", "10.0.3.0/24", "--proto", "tcp", "--action", "drop")
    lab.sql("UPDATE taprouter_policy SET comment = 'changed by hand' WHERE name = 'other'")
    lab.wait_log(r"policies: 2 read from the store", timeout=10, since=offset)
    assert lab.policy_flows(pid) == [], lab.explain()
    assert lab.listed()["brief"]["state"] == lab.served()["brief"]["state"] == "expired"
    lab.assert_ping(h1, "10.0.2.2", count=2)

    lab.policy("enable", "brief")
    assert lab.policy_flows(pid), f"enable returned before the flows were back\n{lab.explain()}"
    assert lab.served()["brief"]["state"] == "installed", lab.served()["brief"]
    # Back for another 2 s: it expires again, later.
    lab.wait_flows(pid, present=False, timeout=10)
    again = lab.wait_state("brief", "expired")
    assert expired_at(again) > when + 2, (item, again)
