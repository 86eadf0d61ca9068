"""The kernel mirror stays exact when its netlink socket overflows: it resyncs from a fresh dump."""

from __future__ import annotations

import ipaddress
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.inject import inject, prefixes  # noqa: E402
from taprouter import netns, prefix  # noqa: E402
from taprouter.routing.mirror import KernelMirror  # noqa: E402
from taprouter.routing.netlink import Watcher, dump_routes  # noqa: E402

ROUTES = 20000


@pytest.fixture
def router_netns():
    """A bare netns with one veth end up and addressed, so routes via 10.9.0.2 are valid."""
    name = "t" + secrets.token_hex(2) + "nl"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        for cmd in (["link", "add", "a0", "type", "veth", "peer", "name", "a1"], ["link", "set", "a0", "up"],
                    ["link", "set", "a1", "up"], ["addr", "add", "10.9.0.1/24", "dev", "a0"]):
            subprocess.run(["ip", "-n", name, *cmd], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def settled(mirror: KernelMirror, name: str, timeout: float = 60) -> bool:
    """Poll until the mirror's routes equal a fresh dump of the kernel's, and stay equal."""
    def kernel() -> dict:
        fresh = KernelMirror()
        fresh.replace([], dump_routes(name), [], [])
        return fresh.routes

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if dict(mirror.routes) == kernel():
            time.sleep(0.5)
            if dict(mirror.routes) == kernel():
                return True
        time.sleep(0.2)
    return False


def test_overflow_during_load_and_withdrawal_resyncs_to_exactly_the_kernel(router_netns):
    mirror = KernelMirror()
    # The smallest receive buffer the kernel allows: a burst of route events must overflow it.
    watcher = Watcher(router_netns, mirror, rcvbuf=1)
    watcher.start()
    try:
        assert watcher.ready.wait(10)
        with netns.iproute(router_netns) as ipr:
            index = ipr.link_lookup(ifname="a0")[0]
        inject(router_netns, index, "10.9.0.2", prefixes(ROUTES))
        assert settled(mirror, router_netns), "mirror differs from the kernel after the load"
        loaded = len(mirror.routes)
        # Withdraw most of them in one burst, then keep a remainder: stale entries would show.
        inject(router_netns, index, "10.9.0.2", list(prefixes(ROUTES))[: ROUTES - 1234], delete=True)
        assert settled(mirror, router_netns), "mirror differs from the kernel after the withdrawal"
    finally:
        watcher.stop()
    assert watcher.resyncs > 0, "the test did not overflow the socket; it proves nothing"
    # A route per (destination, metric): the mirror keeps a prefix's routes as metric, hops pairs.
    routes = [(prefix.to_network(pk), entry[i]) for pk, entry in mirror.items() for i in range(0, len(entry), 2)]
    assert loaded >= ROUTES
    injected = ipaddress.ip_network("20.0.0.0/8")
    assert sum(1 for dst, _metric in routes if dst.subnet_of(injected)) == 1234
