"""What a re-read config file changes for a running daemon: a pure difference of two Config values.

The daemon (core.py, roster.py) applies it; this module only says what differs. Changes the
daemon can make in place: a router added (started as at daemon start) or removed (its switch
emptied of what it put there, then torn down as `taprouter down` would), and per router, ports
added or removed (a TAP renamed is its port removed and added again) and addresses changed on
a port. Everything else the daemon fixed at start (the OpenFlow listener, TLS, the policy
database, the control socket, /metrics, a running router's datapath id, netns or BIRD file)
needs a restart: such a change is named in `restart`, and a reload with any of them changes
nothing, so the daemon never runs half of a file.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .config import Config, Interface, PortTap, RouterConfig


@dataclass(frozen=True)
class Readdressed:
    """A TAP (a port's or a VLAN's) that stays, with addresses to add and to remove."""
    port: PortTap  # as the new file has it
    added: tuple[Interface, ...]
    removed: tuple[Interface, ...]


@dataclass(frozen=True)
class RouterChange:
    name: str
    config: RouterConfig  # the router as the new file has it
    added: tuple[PortTap, ...] = ()  # TAPs: a port's untagged one, or a VLAN's
    removed: tuple[PortTap, ...] = ()
    readdressed: tuple[Readdressed, ...] = ()

    def summary(self) -> list[str]:
        return ([f"router {self.name}: {p.label} ({p.tap}) added" for p in self.added]
                + [f"router {self.name}: {p.label} ({p.tap}) removed" for p in self.removed]
                + [f"router {self.name}: {r.port.label} ({r.port.tap}) addresses "
                   + ", ".join([*(f"+{a}" for a in r.added), *(f"-{a}" for a in r.removed)])
                   for r in self.readdressed])


@dataclass(frozen=True)
class ConfigChange:
    routers: tuple[RouterChange, ...]  # only routers with something to do
    restart: tuple[str, ...]  # "KEY: why": changes that need a restart; none is applied if any
    added: tuple[RouterConfig, ...] = ()  # routers to start
    removed: tuple[RouterConfig, ...] = ()  # routers to stop and tear down (before any is added)

    @property
    def empty(self) -> bool:
        return not self.routers and not self.restart and not self.added and not self.removed


def added_summary(router: RouterConfig) -> str:
    return (f"router {router.name}: added (dpid {router.dpid:#x}, netns {router.netns}, "
            f"{len(router.ports)} port(s){', BIRD' if router.bird is not None else ''})")


def removed_summary(router: RouterConfig) -> str:
    return f"router {router.name}: removed (dpid {router.dpid:#x}, netns {router.netns})"


def _ordered(addresses: tuple[Interface, ...], without: tuple[Interface, ...]) -> tuple[Interface, ...]:
    return tuple(a for a in addresses if a not in without)


def _router_change(old: RouterConfig, new: RouterConfig) -> RouterChange | None:
    old_ports = {(p.number, p.vid, p.tap): p for p in old.taps}
    new_ports = {(p.number, p.vid, p.tap): p for p in new.taps}
    removed = tuple(p for key, p in old_ports.items() if key not in new_ports)
    added = tuple(p for key, p in new_ports.items() if key not in old_ports)
    readdressed = []
    for key, port in new_ports.items():
        before = old_ports.get(key)
        if before is None or set(before.addresses) == set(port.addresses):
            continue
        readdressed.append(Readdressed(port, _ordered(port.addresses, before.addresses),
                                       _ordered(before.addresses, port.addresses)))
    if not (removed or added or readdressed):
        return None
    return RouterChange(new.name, new, added, removed, tuple(readdressed))


def diff(old: Config, new: Config, only: str | None = None) -> ConfigChange:
    """What it takes to go from `old` to `new`; `only`: look at that router alone (and at nothing
    global), as `taprouter reload --router R` asks."""
    restart: list[str] = []
    if only is None:
        for key, before, after in (("openflow.listen", old.listen, new.listen), ("openflow.tls", old.tls, new.tls),
                                   ("database", old.database, new.database),
                                   ("control.socket", old.control, new.control),
                                   ("metrics.listen", old.metrics, new.metrics), ("ha", old.ha, new.ha)):
            if before != after:
                restart.append(f"{key}: changed; the daemon reads it at start only")
    old_routers = {r.name: r for r in old.routers}
    new_routers = {r.name: r for r in new.routers}
    names = [only] if only is not None else [*old_routers, *(n for n in new_routers if n not in old_routers)]
    changes, added, removed = [], [], []
    for name in names:
        before, after = old_routers.get(name), new_routers.get(name)
        if before is None and after is None:
            restart.append(f"routers.{name}: no such router in either file")
        elif before is None:
            if only is not None:
                restart.extend(_clashes(after, old_routers.values()))
            added.append(after)
        elif after is None:
            removed.append(before)
        else:
            for key in ("dpid", "netns"):
                if getattr(before, key) != getattr(after, key):
                    restart.append(f"routers.{name}.{key}: changed; a router's {key} needs a restart")
            if before.bird != after.bird:
                restart.append(f"routers.{name}.bird: changed; BIRD's file is given to BIRD at start, "
                               "a new one (or BIRD added or removed) needs a restart")
            change = _router_change(before, after)
            if change is not None:
                changes.append(change)
    return ConfigChange(tuple(changes), tuple(restart), tuple(added), tuple(removed))


def _clashes(new: RouterConfig, running) -> list[str]:
    """A router added alone (`reload --router R`) next to the routers that keep running: the
    file is checked as a whole, not against them, and one of them may still hold its dpid or
    netns (a router renamed, say), which only the whole file's reload removes first."""
    clashes = []
    for other in running:
        for key in ("dpid", "netns"):
            if getattr(other, key) == getattr(new, key):
                clashes.append(f"routers.{new.name}.{key}: also that of router {other.name}, which runs; "
                               "reload the whole file")
    return clashes


def applied(old: Config, new: Config, only: str | None = None) -> Config:
    """The config the daemon runs once `diff(old, new, only)` is applied: `new`, or with `only`
    that router of `new` and everything else of `old`."""
    if only is None:
        return new
    after = {r.name: r for r in new.routers}
    kept = tuple(after[r.name] if r.name == only else r for r in old.routers if r.name != only or r.name in after)
    if only in after and only not in {r.name for r in old.routers}:
        kept += (after[only],)
    return replace(old, routers=kept)
