"""The switch loses its controller connection and comes back: meanwhile it forwards on the flows it
holds (fail mode secure), the daemon keeps running, and the route changes made while it was away
reach it once it reconnects, also after the old connection is found dead.

The switch reaches the daemon through a small TCP relay that the test can freeze: it stops
carrying bytes and accepting connections, and closes nothing, as when the network between them
goes. Open vSwitch gives up on the connection after its inactivity probe (5 s idle, then 5 s for
the echo) and reconnects once it can. (`ovs-vsctl del-controller` would not do: it also flushes
the switch's flows.)
"""

from __future__ import annotations

import json
import re
import socket
import threading

import ofctl
from taprouter.controller.openflow.pipeline import Table
from routerlab import run

GONE, KEPT, ADDED = "10.99.0.0/24", "10.97.0.0/24", "10.98.0.0/24"
VIA = "10.0.2.2"


class FreezableRelay:
    """127.0.0.1:port -> the daemon's port, one pair of sockets per connection."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self.running = threading.Event()  # clear: frozen
        self.running.set()
        self.closing = threading.Event()  # clear: a side that closed stays unseen by the other
        self.closing.set()
        self.stopped = threading.Event()
        self.sockets: list[socket.socket] = []
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            if not self.running.wait(0.1):
                continue
            try:
                switch, _ = self.listener.accept()
            except socket.timeout:
                continue
            daemon = socket.create_connection(("127.0.0.1", self.target_port))
            self.sockets += [switch, daemon]
            for source, sink in ((switch, daemon), (daemon, switch)):
                thread = threading.Thread(target=self._pump, args=(source, sink), daemon=True)
                thread.start()
                self.threads.append(thread)

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        source.settimeout(0.1)
        try:
            while not self.stopped.is_set():
                if not self.running.wait(0.1):
                    continue  # frozen: leave the bytes where they are
                try:
                    data = source.recv(65536)
                except socket.timeout:
                    continue
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        while not self.closing.wait(0.1) and not self.stopped.is_set():
            pass
        for sock in (source, sink):  # one side went: so does the other
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self.stopped.set()
        self.running.set()
        for thread in self.threads:
            thread.join(5)
        for sock in [self.listener, *self.sockets]:
            sock.close()


def route_actions(lab, network: str) -> str | None:
    """The IPv4 FIB's actions for the network, or None."""
    found = ofctl.with_destination(lab.flows(Table.FIB4), network)
    return found[0].actions if found else None


def on_a_group(lab, network: str) -> bool:
    return bool(re.fullmatch(r"group:\d+", route_actions(lab, network) or ""))


def connected(lab) -> bool:
    return run("ovs-vsctl", "get", "controller", lab.bridge, "is_connected").stdout.strip() == "true"


def test_switch_that_loses_its_controller_keeps_forwarding_and_catches_up(router_lab):
    lab = router_lab
    h1, h2 = lab.host(1), lab.host(2)
    relay = FreezableRelay(lab.controller_port)
    try:
        run("ovs-vsctl", "set", "controller", lab.bridge, f"target=\"tcp:127.0.0.1:{relay.port}\"")
        lab.wait_until(lambda: connected(lab) and relay.sockets, timeout=20,
                       message=lambda: "the switch connected through the relay")
        for network in (GONE, KEPT, ADDED):
            h2.run("ip", "addr", "add", network.replace(".0/24", ".1/24"), "dev", "lo")
        for network in (GONE, KEPT):
            lab.in_router("ip", "route", "add", network, "via", VIA)
        lab.wait_until(lambda: on_a_group(lab, GONE) and on_a_group(lab, KEPT), timeout=15,
                       message=lambda: f"group entries for {GONE} and {KEPT}:\n{lab.dump_flows()}")
        lab.assert_ping(h1, "10.97.0.1", count=3)
        # The hosts resolve their gateway through the punt path, which needs the daemon: pin what
        # they resolved, so that the pings below test the switch's flows alone.
        for host, gateway in ((h1, "10.0.1.1"), (h2, "10.0.2.1")):
            entry = json.loads(host.run("ip", "-j", "neigh", "show", gateway))[0]
            host.run("ip", "neigh", "replace", gateway, "lladdr", entry["lladdr"], "dev", entry["dev"],
                     "nud", "permanent")
        offset = len(lab.log_text())

        relay.running.clear()
        lab.wait_until(lambda: not connected(lab), timeout=30, message=lambda: "the switch gave up")
        # Alone, the switch forwards transit traffic on what it holds.
        lab.assert_ping(h1, "10.97.0.1", count=3)
        lab.in_router("ip", "route", "del", GONE, "via", VIA)
        lab.in_router("ip", "route", "add", ADDED, "via", VIA)
        assert lab.daemon_alive()
        assert on_a_group(lab, GONE) and route_actions(lab, ADDED) is None  # nobody could tell it
        # The daemon hears of the old connection's end only once the new one is up, as when the
        # switch reconnects by another path before the old one times out.
        relay.closing.clear()
        relay.running.set()

        lab.wait_until(lambda: connected(lab), timeout=20, message=lambda: "the switch reconnected")
        lab.wait_until(lambda: route_actions(lab, GONE) is None and on_a_group(lab, ADDED)
                       and on_a_group(lab, KEPT), timeout=20,
                       message=lambda: f"{GONE} gone, {ADDED} and {KEPT} on groups:\n{lab.dump_flows()}")
        # Now the old connection goes, and the daemon finds it gone at once; that must not take
        # the new one down with it.
        relay.closing.set()
        found = lab.wait_log(r"switch 0x[0-9a-f]+(: a connection it has replaced is gone| disconnected)",
                             timeout=15, since=offset)
        lab.in_router("ip", "route", "add", GONE, "via", VIA)
        lab.wait_until(lambda: on_a_group(lab, GONE), timeout=15,
                       message=lambda: f"{GONE} on a group once the old connection was gone:\n{lab.dump_flows()}")
        assert "replaced" in found.group(1), found.group(0)
        for address in ("10.99.0.1", "10.98.0.1", "10.97.0.1", "10.0.1.1"):  # the last: the punt path
            lab.assert_ping(h1, address, count=3)
        assert lab.daemon_alive()
    finally:
        relay.close()
