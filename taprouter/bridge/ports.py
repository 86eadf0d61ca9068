"""The mapping between switch ports and TAPs: (dpid, port) <-> TAP name, from the config."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import Config, RouterConfig


@dataclass(frozen=True)
class SwitchPort:
    dpid: int
    port: int


@dataclass(frozen=True)
class TapPort:
    """One configured port: where it is on the switch and which TAP stands for it."""

    router: str
    netns: str
    switch_port: SwitchPort
    tap: str


class PortMap:
    """Both directions of the port <-> TAP mapping, built once from a validated config."""

    def __init__(self, config: Config):
        self._by_port: dict[SwitchPort, TapPort] = {}
        self._by_tap: dict[tuple[str, str], TapPort] = {}
        for router in config.routers:
            for entry in router_ports(router):
                self._by_port[entry.switch_port] = entry
                self._by_tap[(entry.netns, entry.tap)] = entry

    def by_port(self, dpid: int, port: int) -> TapPort | None:
        return self._by_port.get(SwitchPort(dpid, port))

    def by_tap(self, netns: str, tap: str) -> TapPort | None:
        return self._by_tap.get((netns, tap))

    def __len__(self) -> int:
        return len(self._by_port)


def router_ports(router: RouterConfig) -> list[TapPort]:
    return [TapPort(router.name, router.netns, SwitchPort(router.dpid, p.number), p.tap)
            for p in router.ports]
