"""Policies survive a `kill -9` of the daemon with zero flow changes: the restarted daemon reads
the policies from the store and the switch's flows, groups and meters back, finds them equal and
sends nothing; the policy flows on the switch are the same flows (their duration runs on), their
states come back as installed and their counters go on from where they were."""

from __future__ import annotations

import signal
import time

import pytest

from policylab import both_backends, reconciles


def policy_flows(lab, pids) -> dict[int, dict[str, float]]:
    """Per policy, its flows on the switch: match and actions -> duration."""
    found = {}
    for pid in pids:
        flows = lab.policy_flows(pid)
        found[pid] = {f"{sorted(f.match.items())} {f.actions}": f.duration for f in flows}
    return found


@both_backends
def test_policies_survive_kill_9_with_zero_flow_changes(policy_lab):
    lab = policy_lab
    h1 = lab.host(1)
    for address in ("10.0.2.2", "10.0.3.2"):
        lab.assert_ping(h1, address, count=2)
    lab.pin_neighbours()
    pids = {
        "no-udp-h2": lab.add("no-udp-h2", "--dst", "10.0.2.2/32", "--proto", "udp", "--action", "drop"),
        "cap-h3": lab.add("cap-h3", "--dst", "10.0.3.0/24", "--action", "police", "--rate", "300pps"),
        "via-h3": lab.add("via-h3", "--src", "10.0.1.0/24", "--dst", "10.9.0.0/24", "--action", "forward",
                          "--via", "10.0.3.2"),
        "ping-net2": lab.add("ping-net2", "--dst", "10.0.2.0/24", "--proto", "icmp", "--action", "permit"),
    }
    lab.add("off", "--dst", "10.0.2.0/24", "--proto", "tcp", "--action", "drop", "--disabled")
    for name in pids:
        lab.wait_state(name, "installed", where="api")
    sent = lab.udp_flood(h1, "10.0.2.2", 9, rate=100, seconds=0.2)["sent"]
    dropped = lab.counted(pids["no-udp-h2"], sent)
    # Once the store has the count, it has the states too (the daemon writes them together).
    lab.wait_until(lambda: lab.listed()["no-udp-h2"]["packets"] == dropped, timeout=10,
                   message=lambda: f"{dropped} packets stored: {lab.listed()['no-udp-h2']}")
    stored = lab.listed()
    assert {name: item["state"] for name, item in stored.items()} == {**{name: "installed" for name in pids},
                                                                      "off": "disabled"}, stored
    before = policy_flows(lab, pids.values())
    assert all(before.values()), f"{before}\n{lab.explain()}"

    killed_at = time.monotonic()
    assert lab.kill() == -signal.SIGKILL
    time.sleep(1)  # a deliberate gap: no daemon at all
    lab.start()
    for name in pids:
        lab.wait_state(name, "installed", where="api")
    lab.wait_state("off", "disabled", where="api")
    log = lab.log_since_start()
    found = reconciles(log)
    assert found, f"the restarted daemon logged no reconcile:\n{lab.explain()}"
    assert not any(r.changed for r in found), f"the restarted daemon changed the switch: {found}\n{lab.explain()}"
    assert "policies: 5 read from the store" in log, lab.explain()

    after = policy_flows(lab, pids.values())
    since_kill = time.monotonic() - killed_at
    for pid, flows in before.items():
        assert after[pid].keys() == flows.keys(), f"policy {pid}'s flows changed: {flows} -> {after[pid]}"
        assert all(duration > since_kill for duration in after[pid].values()), (
            f"policy {pid}'s flows were put in again (durations {after[pid]}, killed {since_kill:.1f} s ago)")

    # The counters go on from the stored ones, and the store hears of the new state too.
    sent = lab.udp_flood(h1, "10.0.2.2", 9, rate=100, seconds=0.1)["sent"]
    now_dropped = lab.counted(pids["no-udp-h2"], dropped + sent)
    lab.wait_until(lambda: lab.listed()["no-udp-h2"]["packets"] == now_dropped, timeout=10,
                   message=lambda: f"{now_dropped} packets stored: {lab.listed()['no-udp-h2']}")
    lab.wait_state("no-udp-h2", "installed", where="list")
    lab.assert_ping(h1, "10.0.2.2", count=2)


@pytest.mark.parametrize("policy_lab", ["postgresql"], indirect=True)
def test_a_store_locked_at_start_leaves_the_switchs_policies_alone(policy_lab):
    """A daemon that starts while its store cannot be read yet (here: a lock another client holds on
    the policy table) must not plan the switch without policies: it would delete them all, and put
    them back once the store answers."""
    import psycopg

    lab = policy_lab
    lab.assert_ping(lab.host(1), "10.0.2.2", count=2)
    lab.pin_neighbours()
    pid = lab.add("no-udp-h2", "--dst", "10.0.2.2/32", "--proto", "udp", "--action", "drop")
    lab.wait_state("no-udp-h2", "installed", where="api")
    before = policy_flows(lab, [pid])
    assert lab.kill() == -signal.SIGKILL
    with psycopg.connect(host=str(lab.cluster.socket_dir), dbname=lab.pg_database, user="taprouter") as conn:
        conn.execute("LOCK TABLE taprouter_policy IN ACCESS EXCLUSIVE MODE")
        lab.start()
        time.sleep(2)  # the switch is connected and read back; the store still cannot answer
        during = policy_flows(lab, [pid])
        conn.rollback()
    lab.wait_state("no-udp-h2", "installed", where="api")
    found = reconciles(lab.log_since_start())
    assert during[pid].keys() == before[pid].keys(), f"the policy's flows went while the store was locked: {during}"
    assert not any(r.changed for r in found), f"the restarted daemon changed the switch: {found}\n{lab.explain()}"
