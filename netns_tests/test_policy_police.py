"""`police` caps a flood at its rate, measured: h1 floods h2 with UDP at several times the rate for
a few seconds, tcpdump on h2's link counts what the switch let through, and that must be near the
rate (the meter's burst, a tenth of a second's worth, on top). Without the meter all of it arrives,
as the first flood of each test shows."""

from __future__ import annotations

import re

from policylab import Capture

SECONDS = 3.0
PORT = 9999
# What the counts may stray from the rate by: the sender is paced by a Python loop on a busy
# 2-core machine (it may send late, in clumps), and the meter's buckets start full. Without the
# meter the count is the flood's, several times the rate: far outside.
LOW, HIGH = 0.6, 1.4


def flood(lab, tmp_path, rate: float, size: int) -> tuple[dict, list[str]]:
    """Flood h2 from h1; returns what the sender did and the datagrams h2's link saw."""
    with Capture(lab.host(2), f"udp and dst port {PORT}", tmp_path) as capture:
        sent = lab.udp_flood(lab.host(1), "10.0.2.2", PORT, rate, SECONDS, size=size)
    return sent, capture.lines


def frame_bytes(line: str) -> int:
    """An Ethernet frame's size from tcpdump's `length N` (the UDP payload) line."""
    payload = int(re.search(r"length (\d+)$", line).group(1))
    return payload + 8 + 20 + 14


def warm_up(lab) -> None:
    """h1 and h2 resolved, so the flood is switched from its first datagram."""
    lab.assert_ping(lab.host(1), "10.0.2.2", count=2)


def test_police_caps_a_flood_at_its_packet_rate(policy_lab, tmp_path):
    lab = policy_lab
    rate, flood_rate = 200, 1000
    warm_up(lab)
    sent, arrived = flood(lab, tmp_path, flood_rate, 18)
    assert len(arrived) >= 0.9 * sent["sent"], f"unpoliced, {len(arrived)} of {sent} arrived"

    pid = lab.add("cap-udp", "--src", "10.0.1.2/32", "--dst", "10.0.2.2/32", "--proto", "udp", "--dport", str(PORT),
                  "--action", "police", "--rate", f"{rate}pps")
    lab.wait_state("cap-udp", "installed")
    assert all("meter:" in f.actions for f in lab.policy_flows(pid)), lab.explain()
    sent, arrived = flood(lab, tmp_path, flood_rate, 18)
    achieved = sent["sent"] / sent["elapsed"]
    assert achieved >= 3 * rate, f"the sender managed {achieved:.0f} pps, too few to test a cap of {rate}: {sent}"
    measured = len(arrived) / sent["elapsed"]
    print(f"police {rate}pps: sent {sent['sent']} in {sent['elapsed']:.2f} s ({achieved:.0f} pps), "
          f"{len(arrived)} arrived ({measured:.0f} pps)")
    assert LOW * rate <= measured <= HIGH * rate + rate / 10 / sent["elapsed"], (
        f"police {rate}pps let {len(arrived)} of {sent['sent']} datagrams through in {sent['elapsed']:.2f} s: "
        f"{measured:.0f} pps\n{lab.explain()}")
    # The policy's flow counted the whole flood, before its meter dropped the excess.
    lab.counted(pid, sent["sent"])


def test_police_caps_a_flood_at_its_bit_rate(policy_lab, tmp_path):
    lab = policy_lab
    kbps, size, flood_rate = 800, 1000, 500  # 1042-byte frames at 500 pps: 4168 kbit/s, five times the cap
    warm_up(lab)
    pid = lab.add("cap-kbps", "--src", "10.0.1.2/32", "--dst", "10.0.2.2/32", "--proto", "udp", "--dport",
                  str(PORT), "--action", "police", "--rate", f"{kbps}kbps")
    lab.wait_state("cap-kbps", "installed")
    assert all("meter:" in f.actions for f in lab.policy_flows(pid)), lab.explain()
    sent, arrived = flood(lab, tmp_path, flood_rate, size)
    achieved = sent["sent"] * (size + 42) * 8 / 1000 / sent["elapsed"]
    assert achieved >= 3 * kbps, f"the sender managed {achieved:.0f} kbit/s, too little to test {kbps}: {sent}"
    measured = sum(frame_bytes(line) for line in arrived) * 8 / 1000 / sent["elapsed"]
    print(f"police {kbps}kbps: sent {sent['sent']} in {sent['elapsed']:.2f} s ({achieved:.0f} kbit/s), "
          f"{len(arrived)} arrived ({measured:.0f} kbit/s)")
    assert LOW * kbps <= measured <= HIGH * kbps + kbps / 10 / sent["elapsed"], (
        f"police {kbps}kbps let {len(arrived)} of {sent['sent']} frames through in {sent['elapsed']:.2f} s: "
        f"{measured:.0f} kbit/s\n{lab.explain()}")
