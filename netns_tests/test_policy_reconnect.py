"""A switch that reconnects gets its policies back: while it is away from the daemon, someone
deletes the policy table's flows, a policy's meter and a policy's group with ovs-ofctl; when it
comes back, the daemon reads it back and puts them all in again, and the policies work."""

from __future__ import annotations

import re

import ofctl
from policylab import both_backends
from taprouter.controller.openflow.pipeline import COOKIE_MASK, Owner, Table, cookie


@both_backends
def test_a_reconnecting_switch_gets_the_policies_deleted_meanwhile_back(policy_lab):
    lab = policy_lab
    h1 = lab.host(1)
    lab.assert_ping(h1, "10.0.2.2", count=2)
    pids = {
        "no-net2": lab.add("no-net2", "--dst", "10.0.2.0/24", "--action", "drop"),
        "cap-h3": lab.add("cap-h3", "--dst", "10.0.3.0/24", "--action", "police", "--rate", "300pps"),
        "via-h3": lab.add("via-h3", "--src", "10.0.1.0/24", "--dst", "10.9.0.0/24", "--action", "forward",
                          "--via", "10.0.3.2"),
    }
    for name in pids:
        lab.wait_state(name, "installed", where="api")
    before = {name: sorted(f.line.split(" actions=")[1] + str(sorted(f.match.items()))
                           for f in lab.policy_flows(pid)) for name, pid in pids.items()}
    meter = int(re.search(r"meter:(\d+)", lab.policy_flows(pids["cap-h3"])[0].actions).group(1))
    group = lab.policy_flows(pids["via-h3"])[0].group
    assert group is not None, lab.explain()

    lab.pin_host_gateways(h1, lab.host(2))
    lab.disconnect()
    lab.wait_until(lambda: not lab.switch_connected(), timeout=10, message="the switch let go of the daemon")
    # The daemon knows: its policies wait for a switch.
    for name in pids:
        lab.wait_state(name, "pending", where="api")
    policy_cookies = f"{cookie(Owner.POLICY):#x}/{COOKIE_MASK | 0xFFFF << 32:#x}"
    ofctl.ofctl("del-flows", lab.bridge, f"table={int(Table.POLICY)},cookie={policy_cookies}")
    ofctl.ofctl("del-meter", lab.bridge, f"meter={meter}")
    assert not re.search(rf"^meter={meter} ", ofctl.ofctl("dump-meters", lab.bridge), re.M)
    ofctl.ofctl("del-groups", lab.bridge, f"group_id={group}")
    assert all(lab.policy_flows(pid) == [] for pid in pids.values()), lab.explain()
    assert group not in lab.groups()
    lab.assert_ping(h1, "10.0.2.2", count=2, deadline=5)  # alone, the switch forwards on the routes it holds
    assert not lab.switch_connected()

    lab.reconnect()
    lab.wait_until(lab.switch_connected, timeout=15, message="the switch reconnected")
    for name, pid in pids.items():
        lab.wait_flows(pid, present=True)
        lab.wait_state(name, "installed", where="api")
    after = {name: sorted(f.line.split(" actions=")[1] + str(sorted(f.match.items()))
                          for f in lab.policy_flows(pid)) for name, pid in pids.items()}
    assert after == before, lab.explain()
    assert group in lab.groups(), lab.explain()
    meters = ofctl.ofctl("dump-meters", lab.bridge)
    assert re.search(rf"^meter={meter} pktps .*\n.*rate=300\b", meters, re.M), f"meter {meter} not back:\n{meters}"
    lab.assert_ping_fails(h1, "10.0.2.2", count=2)
    assert "returned an error" not in lab.log_since_start(), lab.explain()
