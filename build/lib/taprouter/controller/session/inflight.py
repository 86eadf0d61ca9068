"""Passes sent to a switch that it has not yet answered for: flow control for reconciling.

Each pass ends with a barrier request. The reconciler sends the next pass only while fewer
than `limit` are unanswered, so that while the switch works through a burst, the changes
behind it gather into one larger pass instead of queueing up as many small ones. Larger
passes are cheaper for the switch: more deletes per bundle, and when every route of a group
goes in one pass, the group's delete takes their flows with it (FibState.sync), which
Open vSwitch 3.1 did at 7-8 µs a flow against 10.5-13 µs flow by flow.

With `limit` 2 the reconciler plans a pass while the switch applies the one before, so
neither waits for the other. A switch that does not answer within `wait` seconds is not
waited for (the pass goes out, as it would without flow control); its barrier replies are
then no longer expected.
"""

from __future__ import annotations

import threading
from collections import deque


class InFlight:
    def __init__(self, limit: int = 2, wait: float = 5.0) -> None:
        self.limit, self.wait = limit, wait
        self._cond = threading.Condition()
        self._xids: deque[int] = deque()

    def sent(self, xid: int) -> None:
        with self._cond:
            self._xids.append(xid)

    def answered(self, xid: int) -> None:
        """A barrier reply: it answers its request and, as a switch answers in order, every
        request sent before it. An xid not awaited changes nothing."""
        with self._cond:
            if xid not in self._xids:
                return
            while self._xids.popleft() != xid:
                pass
            self._cond.notify_all()

    def room(self) -> bool:
        """Wait until fewer than `limit` passes are unanswered; False if that took longer than
        `wait` (they are then forgotten)."""
        with self._cond:
            if self._cond.wait_for(lambda: len(self._xids) < self.limit, self.wait):
                return True
            self._xids.clear()
            return False

    def reset(self) -> None:
        """The connection is gone: nothing it was sent will be answered."""
        with self._cond:
            self._xids.clear()
            self._cond.notify_all()

    def __len__(self) -> int:
        return len(self._xids)
