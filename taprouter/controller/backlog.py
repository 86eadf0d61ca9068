"""Changed prefixes taken from the kernel mirror and not yet planned: how much one pass takes.

During a table load the reconciler falls behind the kernel, and a pass took everything that
had gathered since the last: 10K to 300K routes. A pass plans every route before it sends
any, so while it planned a large one the switch, done with the pass before, sat idle
(ovs-vswitchd at 0 to 30% of a core for up to a second at a time, in a 1M load's CPU
timeline). A pass of at most `limit` routes is planned while the switch applies the one
before (InFlight lets two be outstanding).

The limit stays large because Open vSwitch inserts prefixes in sorted runs cheaper the longer
the run (sending.send): its trie's share of samples was 21% in random order, 7% in sorted runs
of 16K, 4% in runs of 64K and none in runs of 200K.

Withdrawals are not split. A group's delete takes the flows that still use it with it,
cheaper for Open vSwitch than deleting them one by one, and that only happens for the routes
of an emptied group that leave in the same pass (FibState.sync). Withdrawals in slices were
tried (2026-11-26, three alternating pairs of 1M withdrawals): Open vSwitch spent 12.2 and
12.9 µs a route on quiet runs against 10.0 µs, and the withdrawals took longer.
"""

from __future__ import annotations

import os

# TAPROUTER_PASS_ROUTES changes it, for tests (a small value makes a small load go in slices).
PASS_ROUTES = int(os.environ.get("TAPROUTER_PASS_ROUTES", "65536"))


class Backlog:
    """Changed prefixes with their entries, and prefixes that lost their route, as
    KernelMirror.take_changes gives them; the latest change of a prefix wins, as in the mirror."""

    def __init__(self, limit: int = PASS_ROUTES) -> None:
        self.limit = limit
        self._pending: dict[int, tuple] = {}
        self._gone: list[int] = []
        self._whole = False  # a withdrawal is pending: the next pass takes everything

    def __len__(self) -> int:
        return len(self._pending) + len(self._gone)

    def add(self, changed: dict[int, tuple], gone: list[int], withdrawn: bool) -> None:
        """Changes taken from the mirror; `withdrawn`: some prefix among them lost a route."""
        pending = self._pending
        if gone:
            if pending:  # a route pending from before is stale now (one in `changed` is newer)
                for pk in gone:
                    pending.pop(pk, None)
            if self._gone:
                self._gone += gone
            else:
                self._gone = gone
        if pending:
            pending.update(changed)
        else:
            self._pending = changed
        self._whole |= withdrawn or bool(gone)

    def take(self) -> tuple[dict[int, tuple], list[int]]:
        """What the next pass plans, as (changed, gone): everything, or `limit` prefixes when
        only routes came and more than that are pending."""
        pending = self._pending
        if self._whole or len(pending) <= self.limit:
            gone = self._gone
            self.clear()
            return pending, gone
        pop = pending.popitem  # the latest first: a single change behind a load waits least
        return dict([pop() for _ in range(self.limit)]), []

    def clear(self) -> None:
        """A full pass looks at every route in the mirror: nothing pending is left to plan."""
        self._pending, self._gone, self._whole = {}, [], False
