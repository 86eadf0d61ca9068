"""One router's TAPs: adopted from the holder at start, opened for the configured ports the switch
reports (a port's untagged TAP and one per VLAN, all with the port's MAC), carrier following each
port, and handed to the relay.

Called from the main thread at start and then from os-ken's receive thread of the router's switch
(a reconnecting switch can briefly have two), so its state is guarded by its own lock.
"""

from __future__ import annotations

import logging
import os
import threading

from ..config import PortTap, RouterConfig
from . import tap
from .holder import HolderClient, HolderError
from .ports import PortState, SwitchPort
from .relay import Relay

LOG = logging.getLogger("taprouter.taps")


class TapSet:
    def __init__(self, router: RouterConfig, holder: HolderClient, relay: Relay) -> None:
        self.router = router
        self.holder = holder
        self.relay = relay
        self._by_tap: dict[str, PortTap] = {t.tap: t for t in router.taps}
        self._by_number = {p.number: p.taps for p in router.ports}
        self._warned: set[int] = set()  # ports the switch has that the config does not
        self._lock = threading.Lock()

    def update(self, router: RouterConfig) -> None:
        """The router as a re-read config has it (a reload): ports looked up from now on."""
        with self._lock:
            self.router = router
            self._by_tap = {t.tap: t for t in router.taps}
            self._by_number = {p.number: p.taps for p in router.ports}
            self._warned -= set(self._by_number)

    def remove(self, port: PortTap) -> None:
        """A TAP a reload took out of the config (its port's, or its VLAN's): it leaves the relay and
        the holder, and is deleted from the netns, so the kernel drops its addresses and the routes
        through it."""
        router = self.router
        with self._lock:
            self.relay.remove(self._where(port))
            try:
                self.holder.drop(port.tap)
            except HolderError as exc:
                LOG.error("router %s: %s; the holder keeps %s", router.name, exc, port.tap)
            try:
                tap.delete(router.netns, port.tap)
            except Exception as exc:  # noqa: BLE001 - netlink's errors; the port is unconfigured regardless
                LOG.error("router %s: cannot delete TAP %s: %s", router.name, port.tap, exc)
        LOG.info("router %s: %s removed from the config; TAP %s deleted", router.name, port.label, port.tap)

    def _where(self, port: PortTap) -> SwitchPort:
        return SwitchPort(self.router.dpid, port.number, port.vid)

    def readdress(self, port: PortTap, added, removed) -> None:
        """Addresses a reload changed on a port whose TAP stays (a TAP not made yet gets them
        when its switch port is described)."""
        router = self.router
        with self._lock:
            if self.relay.fd(self._where(port)) is None:
                return
            try:
                tap.remove_addresses(router.netns, port.tap, removed)
                link = tap.link_state(router.netns, port.tap)
                tap.configure(router.netns, port.tap, link.mac, added)
            except (tap.TapError, OSError) as exc:
                LOG.error("router %s: %s (%s) addresses not changed: %s", router.name, port.label, port.tap, exc)

    def port_of(self, tap_name: str) -> PortTap | None:
        return self._by_tap.get(tap_name)

    def adopt(self) -> list[str]:
        """Take back the TAP descriptors a previous daemon left with the holder (starting it if
        need be), before any switch connects; returns the names adopted. A TAP no longer
        configured, or no longer in the netns, is released."""
        router = self.router
        self.holder.start()
        adopted = []
        for name, fd in self.holder.get().items():
            port = self.port_of(name)
            if port is None:
                LOG.info("router %s: holder had %s, no longer configured; releasing it", router.name, name)
                self._release(name, fd)
                continue
            try:
                state = tap.link_state(router.netns, name)
            except tap.TapError:
                # The netns was removed and recreated under the holder: that TAP is gone.
                LOG.warning("router %s: holder's %s is not in netns %s; releasing it", router.name, name,
                            router.netns)
                self._release(name, fd)
                continue
            self.relay.add(self._where(port), name, fd, state.mtu)
            adopted.append(name)
        if adopted:
            LOG.info("router %s: re-adopted %d TAP(s) from the holder: %s", router.name, len(adopted),
                     ", ".join(sorted(adopted)))
        return adopted

    def _release(self, name: str, fd: int) -> None:
        os.close(fd)
        self.holder.drop(name)

    def port_ready(self, state: PortState) -> None:
        """The switch described a port or reported a change: open its TAPs (untagged and VLANs') if
        need be, set carrier (every TAP of a port follows it), give them the port's MAC and the
        configured addresses. A port not in the config is left alone."""
        router = self.router
        taps = self._by_number.get(state.number)
        if taps is None:
            with self._lock:
                first = state.number not in self._warned
                self._warned.add(state.number)
            if first:
                LOG.info("router %s: switch port %d is not in the config; leaving it alone", router.name,
                         state.number)
            return
        with self._lock:
            for port in taps:
                self._ready(port, state)

    def _ready(self, port: PortTap, state: PortState) -> None:
        router = self.router
        where = self._where(port)
        try:
            fd = self.relay.fd(where)
            if fd is None:
                fd = tap.open_tap(router.netns, port.tap)
                try:
                    self.holder.put(port.tap, fd)
                except HolderError as exc:
                    LOG.error("router %s: %s; %s will not survive a restart", router.name, exc, port.tap)
                LOG.info("router %s: TAP %s opened for %s", router.name, port.tap, port.label)
            tap.set_carrier(fd, state.link_up)
            link = tap.configure(router.netns, port.tap, state.mac, port.addresses)
            self.relay.add(where, port.tap, fd, link.mtu)
        except (tap.TapError, OSError) as exc:
            LOG.error("router %s: %s (%s) not set up: %s", router.name, port.label, port.tap, exc)

    def carrier_off(self) -> list[str]:
        """Every TAP of the router without carrier: its switch is gone (not merely reconnecting),
        so no switch port stands behind the TAPs. The next port_ready sets carrier again."""
        router = self.router
        dropped = []
        with self._lock:
            for port in router.taps:
                fd = self.relay.fd(self._where(port))
                if fd is None:
                    continue
                try:
                    tap.set_carrier(fd, False)
                    dropped.append(port.tap)
                except OSError as exc:
                    LOG.error("router %s: cannot drop carrier on %s: %s", router.name, port.tap, exc)
        return dropped
