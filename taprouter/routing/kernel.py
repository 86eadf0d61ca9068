"""What taprouter asks of a router's kernel: router sysctls, and resolution of next hops."""

from __future__ import annotations

import logging
import subprocess
import threading

from .. import netns
from .model import Link, NeighbourKey

LOG = logging.getLogger("taprouter.kernel")

# A router forwards; it must not use routes over a port whose carrier is off.
ROUTER_SYSCTLS = {
    "net.ipv4.ip_forward": "1",
    "net.ipv6.conf.all.forwarding": "1",
    "net.ipv4.conf.all.ignore_routes_with_linkdown": "1",
    "net.ipv6.conf.all.ignore_routes_with_linkdown": "1",
    "net.ipv4.conf.all.send_redirects": "0",
    "net.ipv4.conf.default.send_redirects": "0",
}


def prepare(router: str, netns_name: str) -> None:
    """The router's netns, created if missing, with a router's sysctls."""
    if netns.ensure(netns_name):
        LOG.info("router %s: created netns %s", router, netns_name)
    set_router_sysctls(router, netns_name)


def set_router_sysctls(router: str, netns_name: str) -> None:
    with netns.entered(netns_name):
        for key, value in ROUTER_SYSCTLS.items():
            try:
                with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
                    f.write(value)
            except OSError as exc:
                LOG.warning("router %s: cannot set %s=%s: %s", router, key, value, exc)


class Resolver:
    """Asks the kernel to resolve next hops nobody has sent traffic to yet (as SONiC's nbrmgrd).

    A managed neighbour entry makes the kernel resolve it now and keep it fresh, so routes via it
    move onto the switch without waiting for traffic. `ip neigh` runs on a thread of its own:
    the reconcile thread hands over the latest set and never waits for a subprocess. Only the
    latest request counts; the thread alone touches `asked`.
    """

    def __init__(self, router: str, netns_name: str) -> None:
        self.router = router
        self.netns = netns_name
        self.asked: set[NeighbourKey] = set()
        self._wanted: tuple[frozenset[NeighbourKey], dict[int, Link]] | None = None
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=f"resolve-{router}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()

    def request(self, unresolved: frozenset[NeighbourKey], links: dict[int, Link]) -> None:
        """The next hops some route needs resolved now (the previous request is superseded)."""
        with self._cond:
            self._wanted = (unresolved, links)
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stopping or self._wanted is not None)
                if self._stopping:
                    return
                wanted, self._wanted = self._wanted, None
            self.resolve(*wanted)

    def resolve(self, unresolved: frozenset[NeighbourKey], links: dict[int, Link]) -> None:
        self.asked &= unresolved
        for key in sorted(unresolved - self.asked, key=str):
            link = links.get(key.ifindex)
            if link is None:
                continue
            self.asked.add(key)
            proc = subprocess.run(["ip", "-n", self.netns, "neigh", "replace", str(key.ip), "dev", link.name,
                                   "managed"], capture_output=True, text=True)
            if proc.returncode != 0:
                LOG.debug("router %s: cannot ask the kernel to resolve %s: %s", self.router, key.ip,
                          proc.stderr.strip())


def flush_unresolved(router: str, netns_name: str) -> None:
    """Forget neighbours the kernel is still resolving, or failed to: a new HA master's kernel asked
    while its frames were dropped (a standby's, or in the instant before the switch made it master),
    and would wait for its next retransmission (a second) before asking again; forgotten, the next
    packet asks at once."""
    for state in ("incomplete", "failed"):
        proc = subprocess.run(["ip", "-n", netns_name, "neigh", "flush", "nud", state], capture_output=True,
                              text=True)
        if proc.returncode != 0:
            LOG.debug("router %s: ip neigh flush nud %s: %s", router, state, proc.stderr.strip())
