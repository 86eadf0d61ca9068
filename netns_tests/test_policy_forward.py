"""Policy-based routing: the router's route sends 10.9.0.0/24 to h2, and a `forward` policy sends
h1's traffic for it to h3 instead. Both hosts own 10.9.0.1 (on lo) and answer, so the ping works
either way: tcpdump on each host's link says which one the switch sent the echo requests to."""

from __future__ import annotations

from policylab import Capture

TARGET = "10.9.0.1"
ECHO_REQUESTS = f"icmp[icmptype] == icmp-echo and dst host {TARGET}"


def test_forward_sends_a_hosts_traffic_through_a_second_next_hop(policy_lab, tmp_path):
    lab = policy_lab
    h1, h2, h3 = lab.host(1), lab.host(2), lab.host(3)
    for host in (h2, h3):
        host.run("ip", "addr", "add", f"{TARGET}/32", "dev", "lo")
    lab.in_router("ip", "route", "add", "10.9.0.0/24", "via", "10.0.2.2")

    # Before the policy: the route's next hop, h2, gets them.
    with Capture(h2, ECHO_REQUESTS, tmp_path) as at_h2, Capture(h3, ECHO_REQUESTS, tmp_path) as at_h3:
        lab.assert_ping(h1, TARGET, count=4)
    assert len(at_h2.lines) >= 4 and not at_h3.lines, (at_h2.lines, at_h3.lines)

    pid = lab.add("via-h3", "--src", "10.0.1.0/24", "--dst", "10.9.0.0/24", "--action", "forward",
                  "--via", "10.0.3.2")
    # The router has not met h3 yet: the policy waits (pending) while the kernel resolves its next hop.
    lab.wait_state("via-h3", "installed")
    flows = lab.wait_flows(pid, present=True)
    groups = lab.groups()
    assert all(f.group in groups for f in flows), f"{[f.line for f in flows]}\n{groups}"
    assert all("output:3" in bucket for f in flows for bucket in groups[f.group].buckets), groups

    with Capture(h2, ECHO_REQUESTS, tmp_path) as at_h2, Capture(h3, ECHO_REQUESTS, tmp_path) as at_h3:
        lab.assert_ping(h1, TARGET, count=5)
    assert len(at_h3.lines) == 5, f"h3 saw {len(at_h3.lines)} of 5 echo requests: {at_h3.lines}\n{lab.explain()}"
    assert not at_h2.lines, f"h2 still saw echo requests: {at_h2.lines}\n{lab.explain()}"
    lab.counted(pid, 5)

    lab.policy("del", "via-h3")
    assert lab.policy_flows(pid) == [], lab.explain()
    with Capture(h2, ECHO_REQUESTS, tmp_path) as at_h2:
        lab.assert_ping(h1, TARGET, count=2)
    assert len(at_h2.lines) >= 2, at_h2.lines
