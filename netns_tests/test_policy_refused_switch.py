"""A policy Open vSwitch refuses (its policy table is full) is shown failed with the switch's words,
the policies it took stay in force, and the refused one goes in once it changes and fits.

The table is made small with Open vSwitch's own flow limit on table 1 (overflow_policy=refuse), so
the refusal is the switch's real OFPFMFC_TABLE_FULL."""

from __future__ import annotations

import json

from routerlab import TAPROUTER, run, wait_until
from taprouter.controller.openflow.pipeline import Table


def policy(lab, *args: str) -> str:
    return run(TAPROUTER, "policy", *args, "-c", lab.config_path, env=lab.env, timeout=60).stdout


def states(lab) -> dict[str, dict]:
    return {p["name"]: p for p in json.loads(policy(lab, "list", "--json"))}


def test_a_refused_policy_is_failed_and_the_others_stay(router_lab):
    lab = router_lab
    table = int(Table.POLICY)
    held = len(lab.flows(table))
    run("ovs-vsctl", "--", "--id=@t", "create", "Flow_Table", f"flow_limit={held + 1}", "overflow_policy=refuse",
        "--", "set", "Bridge", lab.bridge, f"flow_tables:{table}=@t")
    h1 = lab.host(1)
    h1.run("ping", "-c", "1", "-W", "2", "10.0.2.2")
    policy(lab, "add", "--router", lab.router, "--name", "noping", "--action", "drop", "--dst", "10.0.2.0/24",
           "--proto", "icmp")
    wait_until(lambda: states(lab)["noping"]["state"] == "installed", timeout=10,
               message=lambda: f"noping installed: {states(lab)}")
    # Ten port ranges' worth of flows cannot fit in the one place left.
    policy(lab, "add", "--router", lab.router, "--name", "wide", "--action", "drop", "--proto", "tcp",
           "--dport", "1000-1999")
    found = wait_until(lambda: (s := states(lab)["wide"])["state"] == "failed" and s, timeout=20,
                       message=lambda: f"wide failed: {states(lab)}\n{lab.dump_flows(table)}")
    assert "OFPFMFC_TABLE_FULL" in found["error"], found
    assert states(lab)["noping"]["state"] == "installed"
    assert run("ping", "-c", "1", "-W", "1", "10.0.2.2", netns=h1.name, check=False).returncode != 0, \
        "noping let a ping through"
    cookie_of_wide = f"0x7a70000400{found['id']:06x}"
    assert cookie_of_wide not in lab.dump_flows(table), "the refused policy's partial flows stayed"
    # Room made and the policy changed: it is tried again and goes in.
    run("ovs-vsctl", "set", "Flow_Table", run("ovs-vsctl", "get", "Bridge", lab.bridge,
                                              f"flow_tables:{table}").stdout.strip(), "flow_limit=10000")
    policy(lab, "set", "--router", lab.router, "--name", "wide", "--priority", "150")
    wait_until(lambda: states(lab)["wide"]["state"] == "installed", timeout=20,
               message=lambda: f"wide installed: {states(lab)}\n{lab.dump_flows(table)}")
    assert cookie_of_wide in lab.dump_flows(table)
