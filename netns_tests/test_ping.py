"""Ping: the router netns's kernel answers ICMP and ICMPv6 echo for every address it owns."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_every_host_pings_its_gateway(router_lab, family):
    for host in router_lab.hosts:
        n = host.port
        address = f"10.0.{n}.1" if family == "ipv4" else f"2001:db8:{n}::1"
        router_lab.assert_ping(host, address)


@pytest.mark.parametrize("address", ["10.0.2.1", "10.0.3.1", "2001:db8:2::1", "2001:db8:3::1"])
def test_host_pings_the_router_address_of_another_port(router_lab, address):
    # h1 reaches another port's address through its own gateway: the punt flows match
    # the router's addresses on any port, and the kernel owns all of them.
    router_lab.assert_ping(router_lab.host(1), address)


def test_router_ipv6_addresses_skip_dad(router_lab):
    # A tentative address answers nothing; the router's addresses must be usable at once.
    for n, tap in router_lab.taps.items():
        out = router_lab.in_router("ip", "-6", "-o", "addr", "show", "dev", tap, "scope", "global").stdout
        assert f"2001:db8:{n}::1/64" in out, out
        assert "nodad" in out.split(), out


def test_resolving_hosts_causes_no_switch_errors(router_lab):
    for host in router_lab.hosts:
        router_lab.assert_ping(host, f"10.0.{host.port}.1")
        router_lab.assert_ping(host, f"2001:db8:{host.port}::1")
    # The router now has a neighbour for each host, and offloads host entries for them:
    # wait for those on the switch (or for the switch to refuse them), then check.
    try:
        router_lab.wait_until(lambda: "group:" in router_lab.dump_flows()
                              or router_lab.daemon_status()["switch_errors"], timeout=10)
    except TimeoutError:
        pass
    status = router_lab.fresh_daemon_status()
    assert status["switch_errors"] == 0, status
    assert status["switch_transport"] == "tcp" and status["switch_address"].startswith("127.0.0.1:"), status
    assert "returned an error" not in router_lab.log_since_start()
