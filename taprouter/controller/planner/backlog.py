"""Changed prefixes taken from the kernel mirror and not yet planned: how much one pass takes.

During a table load the reconciler falls behind the kernel. A pass plans every route before it
sends any, so a pass of everything gathered (hundreds of thousands of routes) leaves the switch
idle while it is planned. A pass of at most `limit` routes is planned while the switch applies
the one before (InFlight lets two be outstanding). The limit stays large because Open vSwitch
inserts prefixes in sorted runs cheaper the longer the run (sending.py).

Slices are taken oldest first, each a run of one of the mirror's maps as it came, so a route
costs no dict operation here beyond the mirror's. A later change of a prefix is in a later map,
so its pass comes after the one with the older entry. A small map behind a load goes first when
none of its prefixes is pending before it, so a single change does not wait for the load.

Withdrawals are not split: a group's delete takes the flows that still use it with it, cheaper
for Open vSwitch than deleting them one by one, and that only happens for the routes of an
emptied group that leave in the same pass (FibState.sync). docs/performance.md has the
measurements behind each of these choices.
"""

from __future__ import annotations

from collections import deque
from itertools import islice
from typing import Iterable, Iterator

PASS_ROUTES = 65536  # the daemon's TAPROUTER_PASS_ROUTES changes it (tests make small loads go in slices)
# A map of at most this many changes may pass the load ahead of it (see above).
AHEAD_ROUTES = 1024

Changed = Iterable[tuple[int, tuple]]  # (prefix, entry) pairs: a dict's items, or a slice of them


class Backlog:
    """What KernelMirror.take_changes gave and no pass has taken yet: maps of changed prefixes with
    their entries, and prefixes that lost their route, in the order they came."""

    def __init__(self, limit: int = PASS_ROUTES) -> None:
        self.limit = limit
        self._maps: deque[tuple[dict[int, tuple], list[int]]] = deque()  # oldest first
        self._slicing: Iterator | None = None  # over the oldest map's items, once it goes in slices
        self._taken = 0  # how many of the oldest map's entries earlier passes took
        self._whole = False  # a withdrawal is pending: the next pass takes everything

    def __len__(self) -> int:
        return sum(len(changed) + len(gone) for changed, gone in self._maps) - self._taken

    def add(self, changed: dict[int, tuple], gone: list[int], withdrawn: bool) -> None:
        """Changes taken from the mirror; `withdrawn`: some prefix among them lost a route."""
        if changed or gone:
            self._maps.append((changed, gone))
        self._whole |= withdrawn or bool(gone)

    def take(self) -> tuple[Changed, list[int]]:
        """What the next pass plans: (changed prefixes with their entries, prefixes without a
        route). Everything when a withdrawal is pending, else up to `limit` changed prefixes,
        oldest first (a small map may go ahead)."""
        maps = self._maps
        if self._whole:
            return self._everything()
        if not maps:
            return (), []
        latest = maps[-1][0]
        # Ahead or not, a pass takes at most `limit` (a limit below AHEAD_ROUTES is a test's).
        if len(maps) > 1 and len(latest) <= min(AHEAD_ROUTES, self.limit) and len(self) - len(latest) > self.limit:
            if not any(pk in changed for changed, _ in islice(maps, len(maps) - 1) for pk in latest):
                maps.pop()
                return latest.items(), []
        changed = maps[0][0]
        if self._slicing is None:
            if len(changed) > self.limit:
                self._slicing = iter(changed.items())  # nothing changes a map the backlog holds
            else:
                maps.popleft()
                # Maps that fit behind it in the same pass (the latest entry of a prefix wins).
                while maps and len(changed) + len(maps[0][0]) <= self.limit:
                    changed.update(maps.popleft()[0])
                return changed.items(), []
        # A list, not a dict: a pass only iterates a slice, and a dict cost three times as much.
        part = list(islice(self._slicing, self.limit))
        self._taken += len(part)
        if self._taken >= len(changed) or len(part) < self.limit:  # the map is done
            maps.popleft()
            self._slicing, self._taken = None, 0
        return part, []

    def _everything(self) -> tuple[Changed, list[int]]:
        """Every pending map merged in order: a prefix gone after a change is gone, one changed
        after it went is back."""
        maps = self._maps
        changed, gone = maps.popleft() if maps else ({}, [])
        if self._slicing is not None:
            changed = dict(self._slicing)
        for later, later_gone in maps:
            if later_gone:
                for pk in later_gone:
                    changed.pop(pk, None)
                gone += later_gone
            changed.update(later)
        self.clear()
        if changed and gone:
            gone = [pk for pk in gone if pk not in changed]
        return changed.items(), gone

    def clear(self) -> None:
        """A full pass looks at every route in the mirror: nothing pending is left to plan."""
        self._maps, self._slicing, self._taken, self._whole = deque(), None, 0, False
