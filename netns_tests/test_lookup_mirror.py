"""/v1/lookup's kernel half comes from the daemon's kernel mirror and one fib-match request, not a
table scan: against a real router netns with 20,000 extra routes, every answer names the route and
next hops `ip route get` and `ip route get fibmatch` name, and it costs milliseconds."""

from __future__ import annotations

import json
import statistics
import time

from taprouter.control.client import ControlClient

EXTRA = 20_000


def ip_get(lab, address: str, fibmatch: bool = False) -> dict | None:
    args = ["ip", "-j", "-d", "route", "get"] + (["fibmatch"] if fibmatch else []) + [address]
    result = lab.in_router(*args, check=False)
    return json.loads(result.stdout)[0] if result.returncode == 0 and result.stdout.strip() else None


def test_lookup_matches_ip_route_get(router_lab, tmp_path):
    lab = router_lab
    c = ControlClient(lab.run_dir / "control.sock")
    h1, h2 = lab.host(1), lab.host(2)
    lab.assert_ping(h1, "10.0.1.1", count=1)
    lab.assert_ping(h2, "10.0.2.1", count=1)
    lab.assert_ping(h2, "2001:db8:2::1", count=1)
    batch = tmp_path / "routes.batch"
    lines = [f"route add 10.{100 + i // 256}.{i % 256}.0/24 via 10.0.{1 + i % 2}.2 proto static"
             for i in range(EXTRA)]
    lines += ["route add 10.66.0.0/16 proto bird nexthop via 10.0.1.2 nexthop via 10.0.2.2",
              "route add 10.66.7.0/24 via 10.0.2.2 metric 20", "route add 10.66.7.0/24 via 10.0.1.2 metric 10",
              "route add blackhole 10.68.0.0/16", "route add 2001:db8:77::/48 via 2001:db8:2::2 proto bird"]
    batch.write_text("\n".join(lines) + "\n")
    lab.in_router("ip", "-batch", str(batch))
    lab.wait_until(lambda: c.get("/v1/status", router=lab.router)["routers"][0]["routes"]["kernel_routes"]
                   >= EXTRA + 5, timeout=30, message="the extra routes in the mirror")

    addresses = ["10.0.1.2", "10.0.2.2", "10.0.2.77", "10.100.3.9", "10.177.31.1", "10.66.1.1", "10.66.7.1",
                 "10.68.1.1", "2001:db8:77::1", "2001:db8:2::2", "192.0.2.1", "10.0.1.1"]
    for address in addresses:
        kernel = c.get("/v1/lookup", router=lab.router, address=address)["kernel"]
        got, match = ip_get(lab, address), ip_get(lab, address, fibmatch=True)
        if match is None or match.get("type") == "local":
            # No route, or the router's own address (the local table answers; the main one's
            # connected subnet is what the FIB holds).
            if address == "10.68.1.1":  # fib-match refuses a blackhole ("Invalid argument")
                assert (kernel["prefix"], kernel["type"]) == ("10.68.0.0/16", "blackhole"), kernel
            elif match is None:
                assert kernel["prefix"] is None, (address, kernel)
            continue
        dst = match["dst"]
        assert kernel["prefix"].split("/")[0] == dst.split("/")[0] or (dst == "default" and
                                                                      kernel["prefix"].endswith("/0")), (address,
                                                                                                        kernel, match)
        if "/" in dst:
            assert kernel["prefix"] == dst, (address, kernel, match)
        assert kernel["type"] == match.get("type", "unicast") and kernel["protocol"] == match["protocol"]
        if kernel["type"] != "unicast":
            continue
        hops = {(h["tap"], h["via"]) for h in kernel["next_hops"]}
        # `ip route get` names the one next hop the kernel chose for this flow; fibmatch, all of them.
        assert (got["dev"], got.get("gateway")) in hops, (address, kernel, got)
        listed = match.get("nexthops") or [match]
        assert hops == {(h["dev"], h.get("gateway")) for h in listed}, (address, kernel, match)

    # The cost: the answer over the control socket, many times.
    took = []
    for i in range(300):
        start = time.perf_counter()
        c.get("/v1/lookup", router=lab.router, address=f"10.{100 + i % 78}.{i % 256}.1")
        took.append(time.perf_counter() - start)
    print(f"lookup over the control socket with {EXTRA} extra routes: median {statistics.median(took) * 1e3:.2f} ms, "
          f"max {max(took) * 1e3:.2f} ms")


def test_routes_page_through_a_prefix_as_the_kernel_lists_it(router_lab, tmp_path):
    lab = router_lab
    c = ControlClient(lab.run_dir / "control.sock")
    lab.assert_ping(lab.host(1), "10.0.1.1", count=1)
    lab.assert_ping(lab.host(2), "10.0.2.1", count=1)
    batch = tmp_path / "routes.batch"
    batch.write_text("".join(f"route add 10.{100 + i // 256}.{i % 256}.0/24 via 10.0.{1 + i % 2}.2\n"
                             for i in range(EXTRA)) + "route add 10.100.0.0/16 via 10.0.1.2\n"
                     "route add blackhole 10.100.7.128/25\n")
    lab.in_router("ip", "-batch", str(batch))
    lab.wait_until(lambda: c.get("/v1/status", router=lab.router)["routers"][0]["routes"]["kernel_routes"]
                   >= EXTRA + 2, timeout=30, message="the extra routes in the mirror")

    def walk(prefix: str, limit: int) -> tuple[list[dict], bool]:
        rows, after, fresh = [], None, True
        while True:
            page = c.get("/v1/routes", router=lab.router, prefix=prefix, limit=limit,
                         **({"after": after} if after else {}))
            assert len(page["routes"]) <= limit
            rows += page["routes"]
            fresh = fresh and page["fresh"]
            after = page["next"]
            if after is None:
                return rows, fresh

    def kernel(prefix: str) -> list[str]:
        listed = json.loads(lab.in_router("ip", "-j", "route", "show", "table", "main", "root", prefix).stdout)
        return [r["dst"] if "/" in r["dst"] else r["dst"] + "/32" for r in listed]

    def in_order(prefixes):
        import ipaddress
        return sorted(prefixes, key=lambda p: (ipaddress.ip_network(p).prefixlen, ipaddress.ip_network(p)))

    rows, fresh = lab.wait_until(lambda: (w := walk("10.100.0.0/16", 37)) and w[1] and w, timeout=15,
                                 message="a fresh index")
    assert [r["prefix"] for r in rows] == in_order(kernel("10.100.0.0/16"))
    assert len(rows) == 256 + 2
    by_prefix = {r["prefix"]: r for r in rows}
    assert by_prefix["10.100.7.128/25"]["type"] == "other" and by_prefix["10.100.7.128/25"]["next_hops"] == []
    assert by_prefix["10.100.3.0/24"]["next_hops"] == [{"via": "10.0.2.2", "port": 2, "tap": lab.taps[2],
                                                         "mac": lab.host_mac(lab.host(2))}]
    # The switch has them: each /24 on a group (their gateways answered pings), the blackhole to the kernel.
    lab.wait_until(lambda: all(r["fib_target"] == "group" for r in walk("10.101.0.0/16", 1000)[0]), timeout=15,
                   message="10.101.0.0/16's routes on groups")
    lab.wait_until(lambda: c.get("/v1/routes", router=lab.router, prefix="10.100.7.128/25")["routes"][0]
                   ["fib_target"] == "kernel", timeout=15, message="the blackhole sent to the kernel")

    # A route added later is listed once the index caught up; one deleted is gone once the mirror
    # has the event (the page reads each row from the mirror, whatever the index's age).
    lab.in_router("ip", "route", "add", "10.250.1.0/24", "via", "10.0.1.2")
    lab.in_router("ip", "route", "del", "10.100.3.0/24")
    lab.wait_until(lambda: "10.100.3.0/24" not in [r["prefix"] for r in walk("10.100.0.0/16", 1000)[0]],
                   timeout=2, message="the deleted route gone")
    lab.wait_until(lambda: [r["prefix"] for r in c.get("/v1/routes", router=lab.router, prefix="10.250.0.0/16")
                            ["routes"]] == ["10.250.1.0/24"], timeout=10, message="the new route listed")

    # The whole table, both families, 50 a page: every page's cost over the control socket.
    took, after, count = [], None, 0
    while True:
        start = time.perf_counter()
        page = c.get("/v1/routes", router=lab.router, limit=50, **({"after": after} if after else {}))
        took.append(time.perf_counter() - start)
        count += len(page["routes"])
        after = page["next"]
        if after is None:
            break
    assert count == page["kernel_routes"]
    print(f"/v1/routes over {count} routes, {len(took)} pages of 50: median {statistics.median(took) * 1e3:.2f} ms, "
          f"max {max(took) * 1e3:.2f} ms")
