"""Overview, Devices and Routing with Django's test client, reading a real control server (an
in-memory daemon behind it): what the daemon said is on the page, the live parts come alone, a
daemon that is not running is said so, and BIRD reloads for an operator only."""

from __future__ import annotations

import pytest

import webhelp
from fakedaemon import FakeDaemon, router_status
from taprouter.control.server import ControlServer


@pytest.fixture
def daemon():
    return FakeDaemon(routers={"r1": router_status("r1"), "r2": router_status("r2", connected=False, bird=None)})


@pytest.fixture
def web(tmp_path, daemon):
    socket = tmp_path / "run" / "control.sock"
    server = ControlServer(socket, daemon, group=None)
    server.start()
    yield webhelp.use(webhelp.write_config(tmp_path, socket))
    server.stop()


@pytest.fixture
def viewer(web):
    return webhelp.client("vera", "viewer")


def test_overview_shows_each_router_its_switch_flows_routes_bird_and_last_pass(viewer):
    text = viewer.get("/").content.decode()
    r1 = text.split('id="router-r1"')[1].split('id="router-r2"')[0]
    assert "connected</span> since 2023-11-14 22:13:25 UTC" in r1 and "from 127.0.0.1:40001 over TCP" in r1
    assert "57 flows" in r1 and "4 groups" in r1
    assert "1000 kernel routes, 1002 FIB entries" in r1 and "1 unresolved next hops" in r1
    assert "running</span> (pid 777)" in r1
    assert "12.3 ms" in r1 and "+5 ~1 -2 flows" in r1
    r2 = text.split('id="router-r2"')[1]
    assert "not connected" in r2 and "BIRD</th><td>not configured" in r2


def test_the_live_parts_come_alone_and_follow_the_daemon(viewer, daemon):
    part = viewer.get("/?part=1").content.decode()
    assert "<html" not in part and "57 flows" in part
    daemon.routers["r1"]["flows_installed"] = 58
    assert "58 flows" in viewer.get("/?part=1").content.decode()
    devices = viewer.get("/devices/?part=1").content.decode()
    assert "<html" not in devices and 'id="port-r1-2"' in devices
    daemon.routers["r1"]["ports"][1]["counters"]["rx_packets"] = 12345
    row = viewer.get("/devices/?part=1").content.decode().split('id="port-r1-2"')[1].split("</tr>")[0]
    assert '<td class="num rx">12345</td>' in row


def test_devices_shows_ports_taps_macs_carrier_addresses_and_counters(viewer):
    page = viewer.get("/devices/")
    assert 'data-live="/devices/?part=1"' in page.content.decode()
    row = page.content.decode().split('id="port-r1-1"')[1].split("</tr>")[0]
    for words in ("r1-p1", "02:00:00:00:00:01", '<span class="ok">up</span>', "10.0.1.1/24",
                  '<td class="num rx">10</td>', '<td class="num tx">20</td>', '<td class="num speed">10000 Mb/s</td>'):
        assert words in row, words
    down = page.content.decode().split('id="port-r2-1"')[1].split("</tr>")[0]
    assert '<span class="bad">down</span>' in down


def test_routing_shows_bird_in_its_own_words_and_paginates(viewer, daemon, monkeypatch):
    from taprouter.web import state

    text = viewer.get("/routing/").content.decode()
    assert "<td>ospf1</td><td>OSPF</td><td>master4</td><td>up</td>" in text
    assert "Full/DR" in text and "10.0.2.2" in text
    daemon.routers["r1"]["bird"]["protocols"] = [
        {"name": f"bgp{i}", "proto": "BGP", "table": "master4", "state": "up", "since": "12:00", "info": "Established",
         "routes_imported": i, "routes_exported": 0} for i in range(5)]
    monkeypatch.setattr(state, "PER_PAGE", 2)
    first = viewer.get("/routing/")
    assert [p["name"] for p in first.context["protocols"]] == ["bgp0", "bgp1"]
    assert "Page 1 of 3" in first.content.decode()
    assert [p["name"] for p in viewer.get("/routing/?page=3").context["protocols"]] == ["bgp4"]


def test_an_address_lookup_shows_the_switch_and_the_kernel(viewer, daemon):
    response = viewer.get("/routing/", {"router": "r1", "address": "10.9.1.1"})
    text = response.content.decode()
    assert ("lookup", "r1", "10.9.1.1") in daemon.calls
    assert "group 7 (indirect)" in text and "10.0.2.2 port 2 r1-p2 02:00:00:00:02:02" in text
    assert "The switch and the kernel agree." in text


def test_a_bad_address_is_named_and_never_asked(viewer, daemon):
    text = viewer.get("/routing/", {"router": "r1", "address": "10.9.1"}).content.decode()
    assert "address: &#x27;10.9.1&#x27; is not an IPv4 or IPv6 address" in text
    assert not [c for c in daemon.calls if c[0] == "lookup"]


def test_a_lookup_on_a_router_the_daemon_does_not_run_says_so(viewer):
    text = viewer.get("/routing/", {"router": "nope", "address": "10.9.1.1"}).content.decode()
    assert "the daemon answered 404" in text


def test_a_daemon_that_is_not_running_is_said_on_every_page(web, tmp_path):
    from django.conf import settings

    from taprouter import config as config_mod

    (tmp_path / "other").mkdir()
    settings.TAPROUTER_CONFIG = config_mod.load(webhelp.write_config(tmp_path / "other", tmp_path / "none.sock"))
    viewer = webhelp.client("vera", "viewer")
    for url in ("/", "/?part=1", "/devices/", "/devices/?part=1", "/routing/"):
        response = viewer.get(url)
        assert response.status_code == 200 and "the daemon is not running" in response.content.decode(), url


def test_an_operator_reloads_bird(web, daemon):
    operator = webhelp.client("olga", "operator")
    response = operator.post("/routing/bird/reload/", {"router": "r1"}, follow=True)
    assert ("reload_bird", "r1") in daemon.calls
    assert "router r1: Reconfigured" in [str(m) for m in response.context["messages"]]
    viewer = webhelp.client("vera", "viewer")
    calls = len(daemon.calls)
    assert viewer.post("/routing/bird/reload/", {"router": "r1"}).status_code == 403
    assert not [c for c in daemon.calls[calls:] if c[0] == "reload_bird"]
    assert "Reload BIRD" in operator.get("/routing/").content.decode()
    assert "Reload BIRD" not in viewer.get("/routing/").content.decode()


def test_routes_are_searched_by_prefix_on_the_daemon_a_page_at_a_time(viewer, daemon, monkeypatch):
    hop = {"via": "10.0.2.2", "port": 2, "tap": "r1-p2", "mac": "02:00:00:00:02:02"}

    def routes(router, prefix, limit, after):
        daemon.calls.append(("routes", router, prefix, limit, after))
        rows = [{"prefix": f"10.{i}.0.0/16", "metric": 0, "other_metrics": [], "type": "unicast", "next_hops": [hop],
                 "fib_target": "group", "group": 7} for i in range(3)]
        start = 0 if after is None else int(after.split(".")[1]) + 1
        page = rows[start:start + limit]
        more = start + limit < len(rows)
        return {"router": router, "prefix": prefix, "routes": page, "next": page[-1]["prefix"] if more else None,
                "kernel_routes": 3, "fresh": True}

    monkeypatch.setattr(daemon, "routes", routes)
    from taprouter.web import state
    monkeypatch.setattr(state, "ROUTES_PER_PAGE", 2)
    first = viewer.get("/routing/", {"router": "r1", "prefix": "10.1.2.3/8"})
    text = first.content.decode()
    assert ("routes", "r1", "10.0.0.0/8", 2, None) in daemon.calls  # host bits dropped, the page size asked
    assert "<td>10.0.0.0/16</td>" in text and "<td>10.1.0.0/16</td>" in text and "10.2.0.0/16" not in text
    assert "group 7" in text and 'id="routes-previous"' not in text
    following = first.context["routes_next"]
    second = viewer.get(f"/routing/?{following}").content.decode()
    assert ("routes", "r1", "10.0.0.0/8", 2, "10.1.0.0/16") in daemon.calls
    assert "<td>10.2.0.0/16</td>" in second and 'id="routes-next"' not in second
    back = viewer.get("/routing/?" + second.split('id="routes-previous"')[0].rsplit('href="?', 1)[1].split('"')[0]
                      .replace("&amp;", "&"))
    assert [r["prefix"] for r in back.context["routes"]["routes"]] == ["10.0.0.0/16", "10.1.0.0/16"]


def test_a_bad_prefix_is_named_and_never_asked(viewer, daemon):
    text = viewer.get("/routing/", {"router": "r1", "prefix": "10.0.0.0/40"}).content.decode()
    assert "prefix: &#x27;10.0.0.0/40&#x27; is not an IPv4 or IPv6 prefix" in text
    assert not [c for c in daemon.calls if c[0] == "routes"]


def test_devices_shows_each_vlan_under_its_port_and_the_ingress_drops(viewer, daemon):
    ports = daemon.routers["r1"]["ports"]
    ports[0]["vlans"] = [{"vid": 100, "tap": "r1-p1.100", "present": True, "mac": "02:00:00:00:00:01",
                          "carrier": True, "up": True, "addresses": ["10.100.0.1/24"], "counters": None}]
    ports[1].update(tap=None, present=False, vlans=[])
    daemon.routers["r1"]["ingress_drops"] = [{"port": 1, "reason": "unknown_vlan", "packets": 4}]
    text = viewer.get("/devices/?part=1").content.decode()
    after_port = text.split('id="port-r1-1"')[1]
    assert after_port.index('id="port-r1-1-vlan-100"') < after_port.index('id="port-r1-2"')
    row = after_port.split('id="port-r1-1-vlan-100"')[1].split("</tr>")[0]
    for words in ("1 VLAN 100", "r1-p1.100", "10.100.0.1/24", '<span class="ok">up</span>'):
        assert words in row, words
    assert "VLANs only" in text.split('id="port-r1-2"')[1].split("</tr>")[0]
    assert "Ingress drops: port 1 unknown_vlan 4" in text
