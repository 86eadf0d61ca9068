"""Hitless restart with VLANs: while hosts on VLANs 100 and 200 of port 1 ping, at 100 pps, VLAN
300 on port 2 (across ports) and each other (router on a stick), the daemon is killed with SIGKILL
and started again, then restarted with SIGTERM. Not one ping is lost, and neither new daemon
changes a flow or group on the switch."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

import ofctl
import vlanlab
from test_hitless_restart import assert_reconciled_nothing, pin_neighbours, ping_result
from vlanlab import VLANS

COUNT = 2000
INTERVAL = 0.01  # 100 pps: 20 s


def switched(lab, address: str) -> bool:
    return any(f.group is not None for f in ofctl.with_destination(lab.flows(), address))


def flow_set(lab) -> set[tuple]:
    """The switch's flows without their counters."""
    return {(f.table, f.priority, f.cookie, tuple(sorted(f.match.items())), f.actions) for f in lab.flows()}


@pytest.fixture
def lab(request, tmp_path, ovs):
    yield from vlanlab.vlan_lab(request, tmp_path)


def test_restarts_with_vlans_lose_no_packet_and_change_nothing(lab):
    streams = {"VLAN 100 -> VLAN 300 (ipv4)": (lab.vhost(100), VLANS[300].host_address(4)),
               "VLAN 200 -> VLAN 100 (ipv6)": (lab.vhost(200), VLANS[100].host_address(6))}
    for src, dst in streams.values():
        lab.assert_ping(src, dst, count=3)
    ends = [VLANS[100].host_address(4), VLANS[300].host_address(4), VLANS[200].host_address(6),
            VLANS[100].host_address(6)]
    lab.wait_until(lambda: all(switched(lab, a) for a in ends), timeout=10,
                   message=lambda: f"host entries with groups for {ends}:\n{lab.dump_flows()}")
    pin_neighbours(lab, ends)
    time.sleep(1)  # the warm-up's last pass is out
    before = flow_set(lab)

    pings = {}
    try:
        for name, (src, dst) in streams.items():
            pings[name] = src.popen("ping", "-n", "-q", "-i", str(INTERVAL), "-c", str(COUNT), "-W", "1", dst,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(2)
        assert lab.kill() == -signal.SIGKILL
        time.sleep(1)  # no daemon at all
        lab.start()
        time.sleep(1)
        assert lab.stop(signal.SIGTERM) == 0
        killed_log = lab.log_since_start()
        lab.start()
        assert all(p.poll() is None for p in pings.values()), "ping ended before the restarts were done"
        results = {name: ping_result(p, timeout=COUNT * INTERVAL + 30) for name, p in pings.items()}
    finally:
        for p in pings.values():
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
    termed_log = lab.log_since_start()

    for name, (sent, received, out) in results.items():
        assert sent == COUNT, f"{name}: sent {sent} of {COUNT}:\n{out}"
        assert received == sent, f"{name}: {sent - received} of {sent} pings lost across the restarts:\n{out}"
    assert_reconciled_nothing(killed_log, "killed and restarted")
    assert_reconciled_nothing(termed_log, "SIGTERM-restarted")
    after = flow_set(lab)
    assert after == before, f"flows changed: gone {before - after}, new {after - before}"
