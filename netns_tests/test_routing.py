"""Routing: hosts on three subnets reach each other through the router, over IPv4 and IPv6, and
the switch ends up holding a host entry per neighbour that points at a group rewriting the MACs."""

from __future__ import annotations

import itertools
import re

import pytest

import ofctl
from taprouter.controller.openflow.pipeline import Table

FIB4, FIB6 = int(Table.FIB4), int(Table.FIB6)
FIB_PRIORITY_BASE = 10  # priority = 10 + prefix length


# --- reading the switch --------------------------------------------------------------------

def host_entry(lab, address: str) -> ofctl.Flow | None:
    """The FIB flow for a host address (/32 or /128), or None."""
    v6 = ":" in address
    table, prio = (FIB6, FIB_PRIORITY_BASE + 128) if v6 else (FIB4, FIB_PRIORITY_BASE + 32)
    found = ofctl.with_destination(lab.flows(table), address)
    assert len(found) <= 1, f"more than one FIB entry for {address}: {found}"
    if not found:
        return None
    flow = found[0]
    assert flow.priority == prio, f"host entry {address} has the wrong priority: {flow}"
    return flow


# --- the test ------------------------------------------------------------------------------------

def address(n: int, family: str) -> str:
    return f"10.0.{n}.2" if family == "ipv4" else f"2001:db8:{n}::2"


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_hosts_reach_each_other_and_the_switch_holds_host_entries(router_lab, family):
    lab = router_lab
    # Every ordered pair of hosts, across subnets, through the router.
    for src, dst in itertools.permutations(lab.hosts, 2):
        result = lab.ping(src, address(dst.port, family), count=3, deadline=10)
        assert result.returncode == 0, (f"{family}: {src.name} -> {address(dst.port, family)} failed:\n"
                                        f"{result.stdout}{result.stderr}")
        # Exactly one router hop: the destination's 64 arrives as 63.
        ttls = set(re.findall(r"\b(?:ttl|hlim)=(\d+)", result.stdout))
        assert ttls == {"63"}, f"{src.name} -> {dst.name}: expected every reply with TTL 63:\n{result.stdout}"

    def all_entries():
        entries = {h.port: host_entry(lab, address(h.port, family)) for h in lab.hosts}
        return entries if all(e is not None and e.group is not None for e in entries.values()) else None

    entries = lab.wait_until(all_entries, timeout=10,
                             message=lambda: f"{family} host entries with a group action in\n"
                                             f"{lab.dump_flows()}")
    groups = lab.groups()
    group_ids = {n: e.group for n, e in entries.items()}
    assert len(set(group_ids.values())) == len(group_ids), f"hosts share a group: {group_ids}"
    for host in lab.hosts:
        n = host.port
        gid = group_ids[n]
        assert gid in groups, (f"h{n}'s host entry points at group {gid}, which is not on the switch: "
                               f"{[g.line for g in groups.values()]}")
        group = groups[gid]
        desc = group.line
        assert group.type == "indirect", f"h{n}'s group is not indirect: {desc}"
        assert len(group.buckets) == 1, f"h{n}'s group has {len(group.buckets)} buckets: {desc}"
        actions = group.buckets[0].removeprefix("actions=").split(",")
        # TTL first (an expiring packet reaches the kernel as it arrived), out of the host's port last,
        # and on the way the MACs: the switch port's as source, the host's as destination.
        assert actions[0] == "dec_ttl", f"h{n}'s group {gid} does not start with dec_ttl: {desc}"
        assert actions[-1] == f"output:{n}", f"h{n}'s group {gid} does not end on port {n}: {desc}"
        rewrites = [a.removeprefix("set_field:").split("->") for a in actions if a.startswith("set_field:")]
        eth = {field: value for value, field in rewrites if field.startswith("eth_")}
        assert len([f for _, f in rewrites if f.startswith("eth_")]) == 2 and eth == {
            "eth_src": lab.switch_mac(n), "eth_dst": lab.host_mac(host)}, f"h{n}'s group {gid}: {desc}"
