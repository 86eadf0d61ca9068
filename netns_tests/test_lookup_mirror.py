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
