"""Where a router's policies stand, as the reconcile thread publishes it for the policy store's
writer, the control socket and /metrics."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Mapping, Sequence

from ..policy.model import Policy, State


class States:
    """Each policy's state and error by id, worked out once, by the first reader that asks (the
    store's writer, a scrape), not by the reconcile thread: with 10,000 policies that is a few
    milliseconds, on the pass that put a change on the switch."""

    def __init__(self, policies: Sequence[Policy] = (), planned: Mapping[int, tuple[State, str]] | None = None,
                 expired: Mapping[int, float] | None = None, synced: bool = False,
                 refused: Mapping[int, tuple[Policy, str]] | None = None,
                 given: dict[int, tuple[State, str]] | None = None) -> None:
        self._inputs = (policies, planned or {}, expired or {}, synced, refused or {})
        self._value = given
        self._lock = threading.Lock()

    def get(self) -> dict[int, tuple[State, str]]:
        with self._lock:
            if self._value is None:
                self._value = _states(*self._inputs)
                self._inputs = None  # what they were made of may go
            return self._value


def _states(policies: Sequence[Policy], planned: Mapping[int, tuple[State, str]], expired: Mapping[int, float],
            synced: bool, refused: Mapping[int, tuple[Policy, str]]) -> dict[int, tuple[State, str]]:
    states = {}
    for p in policies:
        if not p.enabled:
            states[p.id] = (State.DISABLED, "")
        elif p.id in expired:
            states[p.id] = (State.EXPIRED, "")
        elif refused and p.id in refused and refused[p.id][0] == p:  # refused as it is now
            states[p.id] = (State.FAILED, f"the switch refused it: {refused[p.id][1]}")
        elif synced and p.id in planned:
            states[p.id] = planned[p.id]
        else:
            states[p.id] = (State.PENDING, "" if synced else "the switch is not connected")
    return states


@dataclass(frozen=True)
class PolicyReport:
    """Per policy id: its state and error (`states`), when it expired (wall clock), and its switch
    counters. Replaced whole; a report whose counters alone changed shares its states."""

    states_of: States
    expired: dict[int, float]
    counters: dict[int, tuple[int, int]]

    @property
    def states(self) -> dict[int, tuple[State, str]]:
        return self.states_of.get()

    @classmethod
    def given(cls, states: dict[int, tuple[State, str]], expired: dict[int, float] | None = None,
              counters: dict[int, tuple[int, int]] | None = None) -> "PolicyReport":
        """A report of states known already (tests, and the empty one a router starts with)."""
        return cls(States(given=states), expired or {}, counters or {})
