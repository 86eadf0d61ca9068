"""An upgrade from the shared FIB-miss meter is hitless: the switch holds every flow to the kernel in
the former form (meter 1, then the controller), as the daemon before per-port FIB-miss policing
wrote it; the new daemon reads it back, modifies each such flow in place (nothing added, nothing
deleted, the flow's age kept), h1 -> h2 pings lose nothing meanwhile, and a restart after it
changes nothing."""

from __future__ import annotations

import re
import subprocess

import ofctl
from routerlab import run
from test_hitless_restart import assert_reconciled_nothing, ping_result, reconciles, warm_up

FIB_TABLES = (3, 4)
_SPEC = re.compile(r"priority=(\d+)(,\S+)? actions=goto_table:5$")


def kernel_flows(lab) -> dict[str, ofctl.Flow]:
    """The FIBs' flows to the kernel by their table, priority and match, as ovs-ofctl spells them."""
    found = {}
    for flow in lab.flows():
        if flow.table not in FIB_TABLES:
            continue
        m = _SPEC.search(flow.line.strip())
        if m:
            found[f"table={flow.table},priority={m.group(1)}{m.group(2) or ''}"] = flow
    return found


def test_upgrade_from_the_shared_meter_modifies_in_place_and_loses_nothing(router_lab):
    lab = router_lab
    warm_up(lab, ("ipv4", "ipv6"))
    before = kernel_flows(lab)
    assert len(before) >= 6, lab.dump_flows()  # the FIBs' misses, the connected subnets of both families
    lab.stop()
    for spec in before:
        run("ovs-ofctl", "-O", "OpenFlow13", "--strict", "mod-flows", lab.bridge,
            f"{spec},actions=meter:1,controller:65535")
    former = [f for f in lab.flows() if f.table in FIB_TABLES and "meter:1" in f.actions]
    assert len(former) == len(before), lab.dump_flows()
    ages = {spec: flow.duration for spec, flow in before.items()}
    ping = subprocess.Popen(["ip", "netns", "exec", lab.host(1).name, "ping", "-n", "-q", "-c", "300", "-i",
                             "0.01", "10.0.2.2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lab.start()
    sent, received, out = ping_result(ping, 60)
    log = lab.log_since_start()
    found = reconciles(log)
    assert found, log[-4000:]
    added, modified, deleted, group_changes = (sum(r[i] for r in found) for i in range(2, 6))
    print(f"upgrade: {len(before)} flows to the kernel in the former form; the new daemon's first reconcile: "
          f"{added} added, {modified} modified, {deleted} deleted, {group_changes} group changes; "
          f"h1 -> h2 lost {sent - received} of {sent}")
    assert (added, deleted, group_changes) == (0, 0, 0) and modified == len(before), found
    after = kernel_flows(lab)
    assert after.keys() == before.keys(), lab.dump_flows()
    assert not [f for f in lab.flows() if f.table in FIB_TABLES and "meter:1" in f.actions]
    # Modified, not replaced: each flow is as old as it was.
    assert all(after[spec].duration >= ages[spec] for spec in before), (ages, after)
    assert received == sent, out
    lab.restart()
    assert_reconciled_nothing(lab.log_since_start(), "restarted")
