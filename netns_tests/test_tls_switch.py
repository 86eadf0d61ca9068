"""A switch over TLS: Open vSwitch and the daemon with certificates from one throwaway CA.

Everything works as over TCP: the kernel answers the hosts through the punt path, routes
reach the switch (a burst of them, in large TLS writes), transit stays on the switch. A
switch presenting a certificate the CA did not sign is refused and logged, and is taken once it
presents a good one again."""

from __future__ import annotations

import pytest

from routerlab import RouterLab, running_lab, run
from taprouter.lab import make_pki

BURST = 3000  # routes added at once: sent to the switch in a few large writes


@pytest.fixture
def tls_lab(request, tmp_path, ovs):
    yield from running_lab(request, RouterLab(tmp_path, tls=True), "tls_lab")


def controller_connected(lab) -> bool:
    out = run("ovs-vsctl", "--columns=is_connected", "find", "controller",
              f"target=\"ssl:127.0.0.1:{lab.controller_port}\"").stdout
    return "true" in out


def fib_entries(lab, start: str) -> int:
    """Flows whose destination, as written, starts with `start`."""
    return sum(str(f.destination).startswith(start) for f in lab.flows() if f.destination is not None)


def test_the_router_works_over_tls(tls_lab, tmp_path):
    lab = tls_lab
    h1, h2 = lab.host(1), lab.host(2)
    assert "(TLS)" in lab.log_since_start()
    # Open vSwitch updates its database's connection status every few seconds.
    lab.wait_until(lambda: controller_connected(lab), timeout=15, message="Open vSwitch connected")
    status = lab.fresh_daemon_status()
    assert status["switch_transport"] == "tls" and status["switch_address"].startswith("127.0.0.1:"), status
    assert " over TLS (" in lab.taprouter("status", "-c", str(lab.config_path), check=False).stdout
    lab.assert_ping(h1, "10.0.1.1")  # the kernel answers: PacketIn and PacketOut over TLS
    lab.assert_ping(h1, "2001:db8:1::1")
    lab.assert_ping(h1, "10.0.2.2")  # switched between subnets

    batch = tmp_path / "routes.batch"
    batch.write_text("".join(f"route add 10.{100 + i // 256}.{i % 256}.0/24 via 10.0.2.2\n"
                             for i in range(BURST)))
    run("ip", "-batch", str(batch), netns=lab.netns)
    lab.wait_until(lambda: fib_entries(lab, "10.1") >= BURST, timeout=30,
                   message=lambda: f"{fib_entries(lab, '10.1')} of {BURST} routes on the switch")
    h2.run("ip", "addr", "add", "10.100.7.9/32", "dev", "lo")
    lab.assert_ping(h1, "10.100.7.9")  # through one of them

    # A switch whose certificate the CA did not sign: the handshake fails and the daemon says so.
    rogue = make_pki(tmp_path / "rogue")
    run("ovs-vsctl", "set-ssl", str(rogue.switch_key), str(rogue.switch_cert), str(lab.pki.ca))
    lab.stop()
    lab.start(wait=False)  # the switch reconnects, with the certificate it has now
    lab.wait_log(r"TLS handshake failed", timeout=20)
    lab.wait_until(lambda: not controller_connected(lab), timeout=15, message="the switch refused")
    lab.assert_ping(h1, "10.100.7.9")  # transit goes on meanwhile, on the switch's flows

    # Its own certificate back: taken at its next attempt.
    run("ovs-vsctl", "set-ssl", str(lab.pki.switch_key), str(lab.pki.switch_cert), str(lab.pki.ca))
    lab.wait_until(lambda: controller_connected(lab), timeout=20, message="the switch reconnected")
    lab.wait_log(r"reconciled \d+ flows", timeout=30)
    lab.assert_ping(h1, "10.0.1.1")
