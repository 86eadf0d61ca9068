"""A switch port whose link goes down: its TAP loses carrier, the kernel stops using the port
(linkdown routes are ignored, neighbours flushed), and the switch's entries for it go away.
When the link comes back, so does reachability."""

from __future__ import annotations

import re
import subprocess

import ofctl


def flows_for(lab, address: str) -> list[ofctl.Flow]:
    return ofctl.with_destination(lab.flows(), address)


def groups(lab) -> dict[int, str]:
    return {gid: group.line for gid, group in lab.groups().items()}


def groups_to_port(lab, port: int) -> dict[int, str]:
    return {gid: desc for gid, desc in groups(lab).items() if re.search(rf"output:{port}(,|$)", desc)}


def offloaded(lab, address: str) -> bool:
    return any(flow.group is not None for flow in flows_for(lab, address))


def tap_flags(lab, port: int) -> list[str]:
    return lab.tap_link(port)["flags"]


def test_port_down_withdraws_the_port_and_up_restores_it(router_lab):
    lab = router_lab
    h1, h2, h3 = lab.host(1), lab.host(2), lab.host(3)
    targets = {"10.0.2.2": h2, "2001:db8:2::2": h2, "10.0.3.2": h3, "2001:db8:3::2": h3}
    for address in targets:
        lab.assert_ping(h1, address, count=2)
    lab.wait_until(lambda: all(offloaded(lab, a) for a in targets), timeout=10,
                   message=lambda: f"host entries with groups for {sorted(targets)}:\n{lab.dump_flows()}")
    assert groups_to_port(lab, 2), f"no group outputs to port 2: {groups(lab)}"
    assert "NO-CARRIER" not in tap_flags(lab, 2)

    # -- link down on the switch side of port 2 --------------------------------------------
    veth = lab.lab.switch_veth(2)
    mark = lab.log_path.stat().st_size
    subprocess.run(["ip", "link", "set", veth, "down"], check=True)
    lab.wait_log(r"port 2 down", since=mark)
    lab.wait_until(lambda: "NO-CARRIER" in tap_flags(lab, 2), timeout=10,
                   message=lambda: f"{lab.taps[2]} still has carrier: {tap_flags(lab, 2)}")
    out = lab.in_router("ip", "link", "show", lab.taps[2]).stdout
    assert "NO-CARRIER" in out, out
    assert all("NO-CARRIER" not in tap_flags(lab, n) for n in (1, 3)), "the other TAPs lost carrier too"

    # The kernel stops using the port, and the switch follows: no entry or group for h2.
    lab.wait_until(lambda: not flows_for(lab, "10.0.2.2") and not flows_for(lab, "2001:db8:2::2")
                   and not groups_to_port(lab, 2), timeout=10,
                   message=lambda: f"entries for h2 or groups to port 2 remain:\n{lab.dump_flows()}\n"
                                   f"{groups(lab)}")
    routes = lab.in_router("ip", "route", "show", "dev", lab.taps[2]).stdout
    assert "linkdown" in routes, f"the kernel's routes over {lab.taps[2]} are not linkdown: {routes}"
    assert not [n for n in lab.router_neighbours() if n["dev"] == lab.taps[2] and "lladdr" in n], \
        f"neighbours on the port that is down: {lab.router_neighbours()}"

    for address in ("10.0.2.2", "2001:db8:2::2"):
        result = lab.ping(h1, address, count=2, deadline=None)
        assert result.returncode != 0, f"h1 still reaches {address} with port 2 down:\n{result.stdout}"
    for address in ("10.0.3.2", "2001:db8:3::2"):
        lab.assert_ping(h1, address, count=3)
        assert offloaded(lab, address), f"{address} is no longer offloaded:\n{lab.dump_flows()}"
    lab.assert_ping(h3, "10.0.1.2", count=3)
    lab.assert_ping(h3, "2001:db8:1::2", count=3)

    # -- and up again ------------------------------------------------------------------------
    mark = lab.log_path.stat().st_size
    subprocess.run(["ip", "link", "set", veth, "up"], check=True)
    lab.wait_log(r"port 2 up", since=mark)
    lab.wait_until(lambda: "NO-CARRIER" not in tap_flags(lab, 2), timeout=10,
                   message=lambda: f"{lab.taps[2]} did not get its carrier back: {tap_flags(lab, 2)}")
    for address in ("10.0.2.2", "2001:db8:2::2"):
        lab.assert_ping(h1, address, count=3, deadline=15)
    lab.wait_until(lambda: offloaded(lab, "10.0.2.2") and offloaded(lab, "2001:db8:2::2")
                   and groups_to_port(lab, 2), timeout=10,
                   message=lambda: f"h2's entries did not come back:\n{lab.dump_flows()}")
