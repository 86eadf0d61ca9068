"""Drop and permit policies, added with the real commands, on the real switch: a drop stops a
routed ping and deleting it brings the ping back; a permit at a higher priority carves an exception
out of a wider drop. The store, the daemon and the switch agree on the state and the counters."""

from __future__ import annotations

from policylab import both_backends

ECHO_FRAME = 98  # bytes: an ICMP echo of ping's default 56 bytes, with its IPv4 and Ethernet headers


def assert_counters_shown(lab, name: str, pid: int, packets: int) -> None:
    """`policy list --json` and `/v1/policies` come to show the switch's packets and bytes."""
    octets = sum(f.n_bytes for f in lab.policy_flows(pid))
    for source in (lab.listed, lab.served):
        lab.wait_until(lambda: (source()[name]["packets"], source()[name]["bytes"]) == (packets, octets), timeout=10,
                       message=lambda: f"{source.__name__} shows the switch's {packets} packets, {octets} bytes: "
                                       f"{lab.listed()[name]}, {lab.served()[name]}\n{lab.explain()}")


@both_backends
def test_drop_stops_a_routed_ping_and_deleting_it_brings_it_back(policy_lab):
    lab = policy_lab
    h1 = lab.host(1)
    lab.assert_ping(h1, "10.0.2.2", count=3)  # routed through the switch before any policy

    pid = lab.add("no-net2", "--dst", "10.0.2.0/24", "--action", "drop")
    # The command returns once the switch has the flows.
    flows = lab.policy_flows(pid)
    assert flows and all(f.actions == "drop" for f in flows), lab.explain()
    lab.wait_state("no-net2", "installed")

    # The switch counts what the drop matched, and the daemon polls those counters and writes them
    # to the store: both show the switch's count, and follow it as more traffic comes.
    lab.assert_ping_fails(h1, "10.0.2.2", count=5)
    # At least the echo requests: once, in a full run on a busy machine, one more was counted
    # (98 bytes, an echo request too) than ping said it sent.
    pings = lab.counted(pid, 5)
    assert sum(f.n_bytes for f in lab.policy_flows(pid)) == pings * ECHO_FRAME, lab.explain()
    assert_counters_shown(lab, "no-net2", pid, pings)
    sent = lab.udp_flood(h1, "10.0.2.2", 9, rate=200, seconds=0.25)["sent"]
    assert_counters_shown(lab, "no-net2", pid, lab.counted(pid, pings + sent))

    lab.policy("del", "no-net2")
    assert lab.policy_flows(pid) == [], lab.explain()
    assert "no-net2" not in lab.listed() and "no-net2" not in lab.served()
    lab.assert_ping(h1, "10.0.2.2", count=3)


def test_permit_carves_an_exception_out_of_a_wider_drop(policy_lab):
    lab = policy_lab
    h1, h2 = lab.host(1), lab.host(2)
    h2.run("ip", "addr", "add", "10.0.2.3/24", "dev", "eth0")
    for address in ("10.0.2.2", "10.0.2.3"):
        lab.assert_ping(h1, address, count=2)

    drop = lab.add("no-net2", "--dst", "10.0.2.0/24", "--action", "drop", "--priority", "100")
    permit = lab.add("ping-h2", "--dst", "10.0.2.2/32", "--proto", "icmp", "--action", "permit",
                     "--priority", "200")
    lab.wait_state("ping-h2", "installed")
    lab.assert_ping(h1, "10.0.2.2", count=4)
    lab.assert_ping_fails(h1, "10.0.2.3", count=3)
    # Each packet met the policy it should have: the permit the pings to .2, the drop those to .3.
    lab.counted(permit, 4)
    lab.counted(drop, 3)

    # Without the exception the wider drop takes .2 as well; with it back, the ping is too.
    lab.policy("disable", "ping-h2")
    assert lab.policy_flows(permit) == [], lab.explain()
    lab.wait_state("ping-h2", "disabled")
    lab.assert_ping_fails(h1, "10.0.2.2", count=3)
    lab.policy("enable", "ping-h2")
    assert lab.policy_flows(permit), lab.explain()
    lab.assert_ping(h1, "10.0.2.2", count=3)
