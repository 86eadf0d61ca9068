"""`--to-router`: a policy that also filters traffic addressed to the router itself. Dropping all of
h1's IP traffic that way stops its pings to the router's own addresses, IPv4 and IPv6, while the
router stays reachable at the link layer: ARP and IPv6 neighbour discovery still resolve it."""

from __future__ import annotations

import json


def resolved(host, address: str) -> dict | None:
    """The host's neighbour entry for an address, if it has a MAC."""
    entries = json.loads(host.run("ip", "-j", "neigh", "show", address, "dev", "eth0") or "[]")
    return next((e for e in entries if e.get("lladdr") and "FAILED" not in e.get("state", [])), None)


def test_to_router_drop_blocks_pings_to_the_router_but_not_arp_or_nd(policy_lab):
    lab = policy_lab
    h1 = lab.host(1)
    for address in ("10.0.1.1", "2001:db8:1::1", "10.0.2.1"):
        lab.assert_ping(h1, address, count=2)

    # Without --to-router a policy sees routed traffic only: the router's own addresses stay reachable.
    routed = lab.add("routed-only", "--in-port", "1", "--action", "drop", "--priority", "100")
    lab.wait_state("routed-only", "installed")
    lab.assert_ping(h1, "10.0.1.1", count=2)
    lab.assert_ping_fails(h1, "10.0.2.2", count=2)
    lab.counted(routed, 2)
    lab.policy("del", "routed-only")

    pid = lab.add("h1-deaf", "--in-port", "1", "--action", "drop", "--to-router")
    lab.wait_state("h1-deaf", "installed")
    router_mac = lab.switch_mac(1)
    for address in ("10.0.1.1", "2001:db8:1::1"):
        h1.run("ip", "neigh", "flush", "dev", "eth0", "to", address)
        assert resolved(h1, address) is None, h1.run("ip", "neigh", "show")
        lab.assert_ping_fails(h1, address, count=3)
        # The echo requests were dropped, yet the address was resolved to the router's MAC first.
        entry = resolved(h1, address)
        assert entry is not None and entry["lladdr"].lower() == router_mac, (
            f"{address} not resolved to {router_mac} while its pings were dropped: {entry}\n{lab.explain()}")
    lab.assert_ping_fails(h1, "10.0.2.1", count=2)  # another port's address: the router's too
    lab.counted(pid, 8)

    lab.policy("del", "h1-deaf")
    lab.assert_ping(h1, "10.0.1.1", count=2)
    lab.assert_ping(h1, "2001:db8:1::1", count=2)
