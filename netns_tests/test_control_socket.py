"""The control socket of a real daemon, asked in Python (ControlClient, no curl): /v1/status is
current (1,000 routes show within 2 s) and says what a deleted bridge left; /v1/lookup names the
same next hop as the kernel and the switch; /v1/bird/reload without BIRD; `taprouter status` asks
the socket and says when no daemon runs.
"""

from __future__ import annotations

import json
import time

import pytest

from routerlab import RouterLab, run, running_lab
from taprouter.control.client import ControlClient
from taprouter.controller.openflow.pipeline import Owner, Table, owner_of

FRESH = 2.0  # seconds within which status must show a change of the kernel's routes
SWITCH_GONE = 3  # seconds without a switch before the daemon drops carrier (30 s by default)


def client(lab) -> ControlClient:
    return ControlClient(lab.run_dir / "control.sock")


def status(lab) -> dict:
    answer = client(lab).get("/v1/status", router=lab.router)
    (entry,) = answer["routers"]
    assert entry["router"] == lab.router
    return entry


def test_status_shows_a_thousand_new_routes_within_two_seconds(router_lab, tmp_path):
    lab = router_lab
    before = lab.wait_until(lambda: (r := status(lab)["routes"]) and r, timeout=5, message="route counts")
    batch = tmp_path / "routes.batch"
    batch.write_text("".join(f"route add 10.{100 + i // 256}.{i % 256}.0/24 via 10.0.2.2\n" for i in range(1000)))
    lab.in_router("ip", "-batch", str(batch))
    added = time.monotonic()

    def counted():
        routes = status(lab)["routes"]
        # At least: the daemon resolves 10.0.2.2 for the routes, which adds h2's host entry.
        return (routes["kernel_routes"] == before["kernel_routes"] + 1000
                and routes["fib_entries"] >= before["fib_entries"] + 1000 and routes)

    lab.wait_until(counted, timeout=FRESH, interval=0.05,
                   message=lambda: f"1,000 more routes than {before}: {status(lab)['routes']}")
    took = time.monotonic() - added
    print(f"status showed 1,000 new routes {took:.2f} s after ip -batch returned")

    def on_the_switch():
        routes, flows = status(lab)["routes"], route_flows(lab)
        return routes["fib_entries"] == len(flows) and routes["switched"] == sum(f.group is not None for f in flows)

    lab.wait_until(on_the_switch, timeout=10, message=lambda: f"{status(lab)['routes']}: as many route flows")
    routes = status(lab)["routes"]
    assert routes["switched"] + routes["to_kernel"] == routes["fib_entries"]
    assert routes["switched"] >= 1000  # on h2's group, once the daemon resolved it


def route_flows(lab) -> list:
    return [f for table in (Table.FIB4, Table.FIB6) for f in lab.flows(int(table)) if owner_of(f.cookie) == Owner.ROUTE]


@pytest.fixture
def quick_lab(request, tmp_path, ovs):
    """router_lab, with a daemon that drops its TAPs' carrier after SWITCH_GONE s without a switch."""
    lab = RouterLab(tmp_path)
    lab.env["TAPROUTER_SWITCH_GONE"] = str(SWITCH_GONE)
    yield from running_lab(request, lab, "quick_lab")


def test_status_after_the_bridge_is_deleted_and_rebuilt(quick_lab):
    lab = quick_lab
    entry = status(lab)
    assert entry["switch"]["connected"] is True
    assert all(p["present"] and p["carrier"] and p["up"] and p["link_up"] is True for p in entry["ports"]), \
        entry["ports"]
    # The switch's own word for each port's speed (OVS's userspace datapath says 10 Gb/s for a veth).
    assert all(type(p["speed_kbps"]) is int and p["speed_kbps"] > 0 for p in entry["ports"]), entry["ports"]
    run("ovs-vsctl", "del-br", lab.bridge)
    deleted = time.monotonic()

    def gone():
        e = status(lab)
        return not e["switch"]["connected"] and e

    entry = lab.wait_until(gone, timeout=10, message=lambda: f"switch disconnected: {status(lab)['switch']}")
    assert entry["switch"]["since"] is None and entry["switch"]["address"] is None
    assert all(p["link_up"] is None and p["speed_kbps"] is None for p in entry["ports"]), entry["ports"]
    # A switch may come back at once (its flows forward meanwhile): carrier stays a while, then goes.
    entry = lab.wait_until(lambda: (e := status(lab)) and not any(p["carrier"] for p in e["ports"]) and e,
                           timeout=SWITCH_GONE + 10, message=lambda: f"no carrier: {status(lab)['ports']}")
    assert time.monotonic() - deleted >= SWITCH_GONE
    for port in entry["ports"]:
        assert port["present"] and port["link_up"] is None, port
        assert "LOWER_UP" not in lab.tap_link(port["port"])["flags"], lab.tap_link(port["port"])
    text = lab.taprouter("status", "-c", str(lab.config_path), check=False)
    assert text.returncode == 1, text.stdout
    assert "switch not connected" in text.stdout and "NO-CARRIER" in text.stdout
    assert ", carrier" not in text.stdout, text.stdout

    # The bridge again, with the hosts' ports: carrier and the switch's links come back.
    lab.lab.up()
    for n in (1, 2, 3):
        run("ovs-vsctl", "add-port", lab.bridge, lab.lab.switch_veth(n), "--", "set", "interface",
            lab.lab.switch_veth(n), f"ofport_request={n}")
    entry = lab.wait_until(lambda: (e := status(lab)) and e["switch"]["connected"]
                           and all(p["carrier"] and p["link_up"] for p in e["ports"]) and e, timeout=20,
                           message=lambda: f"switch and carrier back: {status(lab)}")
    assert entry["switch"]["reconnects"] == 1
    lab.wait_until(lab.punt_flows_installed, timeout=15, message=lambda: lab.dump_flows())
    lab.assert_ping(lab.host(1), "10.0.2.2", count=3)


def test_lookup(router_lab):
    lab = router_lab
    h1, h2 = lab.host(1), lab.host(2)
    c = client(lab)
    # A resolved host: after a ping its host entry is on a group to its MAC and port.
    lab.assert_ping(h1, "10.0.1.1", count=2)
    mac = lab.host_mac(h1)

    def resolved():
        answer = c.get("/v1/lookup", router=lab.router, address="10.0.1.2")
        return answer["switch"]["target"] == "group" and answer

    answer = lab.wait_until(resolved, timeout=10, message="h1's host entry on a group")
    assert answer["router"] == lab.router and answer["address"] == "10.0.1.2"
    switch, kernel = answer["switch"], answer["kernel"]
    assert switch["prefix"] == "10.0.1.2/32"
    assert switch["table"] == int(Table.FIB4)
    assert switch["next_hops"] == [{"via": "10.0.1.2", "port": 1, "tap": lab.taps[1], "mac": mac}]
    assert kernel["prefix"] == "10.0.1.0/24" and kernel["type"] == "unicast" and kernel["protocol"] == "kernel"
    assert kernel["next_hops"] == [{"via": None, "port": 1, "tap": lab.taps[1], "mac": mac}]
    assert answer["agree"] is True
    assert switch["group"] in lab.groups(), f"group {switch['group']} not on the switch"
    # The same host over IPv6.
    lab.assert_ping(h1, "2001:db8:1::1", count=2)
    answer = lab.wait_until(lambda: (a := c.get("/v1/lookup", router=lab.router, address="2001:db8:1::2"))
                            ["switch"]["target"] == "group" and a, timeout=10, message="h1's IPv6 host entry")
    assert answer["switch"]["table"] == int(Table.FIB6) and answer["switch"]["prefix"] == "2001:db8:1::2/128"
    assert [(h["port"], h["mac"]) for h in answer["switch"]["next_hops"]] == [(1, mac)]
    assert answer["agree"] is True

    # A static route via h2, added in the router's netns: both sides name h2.
    lab.in_router("ip", "route", "add", "10.66.0.0/16", "via", "10.0.2.2")
    lab.assert_ping(h2, "10.0.2.1", count=2)
    h2_mac = lab.host_mac(h2)
    answer = lab.wait_until(lambda: (a := c.get("/v1/lookup", router=lab.router, address="10.66.1.2"))
                            ["switch"]["target"] == "group" and a["switch"]["next_hops"][0]["mac"] and a,
                            timeout=10, message="10.66.0.0/16 on h2's group")
    hop = {"via": "10.0.2.2", "port": 2, "tap": lab.taps[2], "mac": h2_mac}
    assert answer["switch"]["prefix"] == "10.66.0.0/16" and answer["switch"]["next_hops"] == [hop]
    assert answer["kernel"]["prefix"] == "10.66.0.0/16" and answer["kernel"]["next_hops"] == [hop]
    assert answer["kernel"]["protocol"] == "boot"
    assert answer["agree"] is True

    # No route: a table miss on the switch, none in the kernel, and that agrees.
    answer = c.get("/v1/lookup", router=lab.router, address="192.0.2.1")
    assert answer["switch"]["prefix"] is None and answer["switch"]["target"] == "kernel"
    assert answer["switch"]["next_hops"] == [] and answer["switch"]["group"] is None
    assert answer["kernel"]["prefix"] is None and answer["kernel"]["next_hops"] == []
    assert answer["agree"] is True


def test_bird_reload_without_bird(router_lab):
    lab = router_lab
    answer = client(lab).post("/v1/bird/reload", {"router": lab.router})
    assert answer == {"results": [{"router": lab.router, "reloaded": False, "message": "no BIRD configured"}]}
    assert client(lab).post("/v1/bird/reload", {"router": None}) == {"results": []}


def test_taprouter_status_uses_the_socket_then_says_no_daemon_runs(router_lab):
    lab = router_lab
    result = lab.taprouter("status", "-c", str(lab.config_path), "--json")
    (entry,) = json.loads(result.stdout)
    assert entry["daemon"]["source"] == "control socket" and entry["daemon"]["pid"] == lab.proc.pid
    assert entry["healthy"] is True and entry["switch"]["connected"] is True
    text = lab.taprouter("status", "-c", str(lab.config_path))
    assert f"router {lab.router} " in text.stdout and "health: OK" in text.stdout
    assert "switch connected since" in text.stdout

    lab.stop()
    result = lab.taprouter("status", "-c", str(lab.config_path), "--json", check=False)
    assert result.returncode == 1
    (entry,) = json.loads(result.stdout)
    assert entry["daemon"] is None and entry["healthy"] is False
    assert entry["problems"][0].startswith("daemon not running"), entry["problems"]
    text = lab.taprouter("status", "-c", str(lab.config_path), check=False)
    assert text.returncode == 1
    assert f"daemon not running (no answer on {lab.run_dir / 'control.sock'}" in text.stdout, text.stdout
