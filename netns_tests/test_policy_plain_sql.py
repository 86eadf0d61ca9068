"""Rows changed behind the daemon's back, by plain SQL in the backend's own client (sqlite3, psql):
triggers move the store's generation, which the daemon looks at every few seconds, so each change
reaches the switch within 5 s. A row no command could have written is shown as failed, never
installed."""

from __future__ import annotations

import time

from policylab import both_backends

WITHIN = 5.0  # seconds, as the README promises


def reaches_switch(lab, statement: str, pid: int, present: bool) -> float:
    """Run the SQL; returns how long until the policy's flows were on (or off) the switch."""
    started = time.monotonic()
    lab.sql(statement)
    lab.wait_flows(pid, present=present, timeout=WITHIN)
    return time.monotonic() - started


@both_backends
def test_rows_changed_by_plain_sql_reach_the_switch_within_5_s(policy_lab):
    lab = policy_lab
    h1 = lab.host(1)
    lab.assert_ping(h1, "10.0.2.2", count=2)
    pid = lab.add("no-net2", "--dst", "10.0.2.0/24", "--action", "drop")
    lab.wait_state("no-net2", "installed")
    took = {}

    took["disable"] = reaches_switch(lab, "UPDATE taprouter_policy SET enabled = false WHERE name = 'no-net2'",
                                     pid, present=False)
    lab.assert_ping(h1, "10.0.2.2", count=2)
    lab.wait_state("no-net2", "disabled")
    took["enable"] = reaches_switch(lab, "UPDATE taprouter_policy SET enabled = true WHERE name = 'no-net2'",
                                    pid, present=True)
    lab.assert_ping_fails(h1, "10.0.2.2", count=2)

    # A row inserted by hand, with the columns that have defaults left out.
    started = time.monotonic()
    lab.sql(f"INSERT INTO taprouter_policy (router, name, dst, proto, action, priority) "
            f"VALUES ('{lab.router}', 'by-hand', '10.0.3.0/24', 17, 'drop', 300)")
    by_hand = lab.wait_until(lambda: lab.served().get("by-hand"), timeout=WITHIN,
                             message=lambda: f"the inserted row at the daemon\n{lab.explain()}")["id"]
    lab.wait_flows(by_hand, present=True, timeout=WITHIN - (time.monotonic() - started))
    took["insert"] = time.monotonic() - started
    lab.wait_state("by-hand", "installed")

    # A row no command would write: listed as failed with its field, and nothing installed.
    lab.sql("UPDATE taprouter_policy SET dst = '10.0.3.0/33' WHERE name = 'by-hand'")
    lab.wait_flows(by_hand, present=False, timeout=WITHIN)
    broken = lab.listed()["by-hand"]
    assert broken["state"] == "failed" and "dst" in broken["error"], broken

    took["delete"] = reaches_switch(lab, "DELETE FROM taprouter_policy WHERE name = 'no-net2'", pid, present=False)
    lab.assert_ping(h1, "10.0.2.2", count=2)
    print(f"{lab.backend}: plain SQL reached the switch in " + ", ".join(f"{k} {v:.2f} s" for k, v in took.items()))
