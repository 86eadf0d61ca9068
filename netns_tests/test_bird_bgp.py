"""eBGP: a peer router in h3 (AS 65003) announces two prefixes to the router's BIRD (AS 65000);
they reach the kernel and the switch, traffic to them is switched, and they leave the kernel and
the switch when the peer withdraws them and when the peer dies (hold timer)."""

from __future__ import annotations

import signal

import pytest

import birdlab

HOLD = 6
NET_A, NET_B = "10.30.0.0/24", "10.31.0.0/24"
PEER = birdlab.bgp_peer(port=3, asn=65003, routes=[NET_A, NET_B], hold=HOLD, lo_addresses=["10.30.0.1/24"])


@pytest.fixture
def lab(request, tmp_path, ovs):
    yield from birdlab.bird_lab(request, tmp_path, peers=[PEER],
                                router_extra=birdlab.router_bgp(peer_port=3, peer_as=65003, hold=HOLD))


def wait_gone(lab, prefix: str, timeout: float = 10) -> None:
    lab.wait_until(lambda: lab.kernel_route(prefix) is None and lab.fib_flow(prefix) is None,
                   timeout=timeout, interval=0.2, message=lambda: f"{prefix} gone from the kernel and "
                   f"the switch\n{lab.bird_report()}")


def wait_learned(lab, prefix: str, timeout: float = 15) -> None:
    lab.wait_until(lambda: (r := lab.kernel_route(prefix)) and r.get("gateway") == "10.0.3.2"
                   and r.get("protocol") == "bird", timeout=timeout, interval=0.2,
                   message=lambda: f"{prefix} via 10.0.3.2 proto bird in the kernel\n{lab.bird_report()}")
    lab.wait_fib_group_flow(prefix)


def test_bgp_routes_offloaded_withdrawn_and_dropped_when_peer_dies(lab):
    peer = lab.peer(3)
    watch = birdlab.Stopwatch()
    session = lab.wait_protocol("peer3", "Established", timeout=30)
    assert session["proto"] == "BGP", session
    print(f"BGP Established after {watch():.1f} s")

    for prefix in (NET_A, NET_B):
        wait_learned(lab, prefix)
    assert lab.protocol("peer3")["routes_imported"] == 2, lab.bird_report()
    print(f"both prefixes in the kernel and on the switch after {watch():.1f} s")
    lab.assert_switched(lab.host(1), "10.30.0.1", NET_A)

    # The peer withdraws NET_B: a new config without it, `birdc configure`.
    peer.reconfigure(peer.config.read_text().replace(f"  route {NET_B} unreachable;\n", ""))
    wait_gone(lab, NET_B)
    assert lab.fib_flow(NET_A) is not None and lab.kernel_route(NET_A) is not None, lab.bird_report()

    # The peer withdraws everything (`disable` its static protocol), then announces it again.
    peer.birdc("disable announced")
    wait_gone(lab, NET_A)
    assert lab.protocol("peer3")["info"] == "Established", "withdrawing routes must not drop the session"
    peer.birdc("enable announced")
    wait_learned(lab, NET_A)
    lab.assert_switched(lab.host(1), "10.30.0.1", NET_A)

    # The peer dies without a word, as when its machine loses power: first its frames to the
    # router go to a MAC the switch drops (so not even the kernel's FIN or RST gets through;
    # BIRD binds its socket to eth0, which a blackhole route would not stop), then its BIRD
    # is killed. Only the hold timer can tell the router.
    lab.host(3).run("ip", "neigh", "replace", "10.0.3.1", "lladdr", "02:00:00:00:00:01", "dev", "eth0",
                    "nud", "permanent")
    peer.signal(signal.SIGKILL)
    peer.proc.wait(timeout=5)
    assert not lab.pid_alive(peer.pid)
    died = birdlab.Stopwatch()
    wait_gone(lab, NET_A, timeout=HOLD + 10)
    print(f"routes gone {died():.1f} s after the peer died (hold time {HOLD} s)")
    session = lab.protocol("peer3")
    assert session["info"] != "Established" and session["state"] != "up", session
    assert "Hold timer expired" in lab.router_birdc("show protocols all peer3"), lab.bird_report()
    assert lab.fib_flow(NET_B) is None and lab.kernel_route(NET_B) is None, lab.bird_report()
