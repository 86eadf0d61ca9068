"""A router's HA role, worked out from what its lease thread last saw; pure, so tested in tables.

STARTING: the lease has not answered yet (nothing is written). STANDBY: another daemon holds the
lease (OpenFlow slave). MASTER: we hold it and renewed it within `lease_seconds`. FENCED: we were
master and cannot renew (the database is gone): no flows are planned, the switch role is left.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import Enum
from typing import Iterable


class Role(Enum):
    STARTING = "starting"
    STANDBY = "standby"
    MASTER = "master"
    FENCED = "fenced"


@dataclass(frozen=True)
class LeaseState:
    """What the lease thread last saw, replaced whole."""

    held: bool = False  # we hold the advisory lock and the row names us
    generation: int = 0  # the row's generation (ours while held); 0: not known yet
    holder: str = ""  # the node the row names
    renewed: float | None = None  # monotonic: our last successful renewal while held
    answered: float | None = None  # monotonic: the database's last answer of any kind
    error: str = ""  # why the database could not be asked, last time


def decide(lease: LeaseState, was: Role, now: float, lease_seconds: float) -> Role:
    """The role now. A master whose renewals stopped stays off the switch's tables (FENCED) until
    the database answers again; the lease thread then tells whether it is still the holder."""
    if lease.held and lease.renewed is not None and now - lease.renewed < lease_seconds:
        return Role.MASTER
    if was in (Role.MASTER, Role.FENCED) and (lease.held or lease.error):
        return Role.FENCED
    if lease.answered is not None and not lease.held:
        return Role.STANDBY
    return Role.FENCED if was is Role.FENCED else was if was is Role.STANDBY else Role.STARTING


def lock_key(dpid: int) -> int:
    """The advisory lock's key for a switch: a signed 64-bit number from its dpid, namespaced so
    another application's locks on small integers never collide with ours."""
    digest = hashlib.sha256(b"taprouter-ha:%d" % dpid).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


CONVERGING = frozenset({"BGP", "OSPF"})


# OSPF neighbour states that are done: Full, or 2-Way between two routers that are neither DR nor
# BDR (they never go further on a broadcast network).
OSPF_SETTLED = ("Full", "2-Way")


def bird_converged(protocols: Iterable[tuple[str, str, str]], ospf_neighbours: Iterable[str] = ()) -> bool:
    """(proto, state, info) of every BIRD protocol, and the state of every OSPF neighbour (BIRD's
    words, e.g. Full/DR, Loading/-): True when every BGP and OSPF protocol is up (BGP's info then says
    Established) and no OSPF neighbour is still exchanging its database. A disabled protocol does
    not count."""
    for proto, state, info in protocols:
        if proto in CONVERGING and not info.startswith("Disabled") and state != "up":
            return False
    return all(state.startswith(OSPF_SETTLED) for state in ospf_neighbours)
