"""inflight: the reconciler sends a pass only while fewer than `limit` are unanswered."""

from __future__ import annotations

import threading
import time

from taprouter.controller.session.inflight import InFlight


def test_room_while_under_the_limit_and_a_reply_answers_everything_before_it():
    passes = InFlight(limit=2, wait=5.0)
    assert passes.room()
    passes.sent(10)
    assert passes.room()
    passes.sent(11)
    passes.sent(12)
    passes.answered(11)  # replies come in order: 10 was answered too
    assert len(passes) == 1 and passes.room()
    passes.answered(99)  # not awaited: nothing changes
    assert len(passes) == 1


def test_the_next_pass_waits_for_a_reply_and_goes_when_it_comes():
    passes = InFlight(limit=1, wait=5.0)
    passes.sent(1)
    threading.Timer(0.05, passes.answered, args=(1,)).start()
    started = time.monotonic()
    assert passes.room()
    assert 0.03 < time.monotonic() - started < 4.0


def test_a_switch_that_does_not_answer_is_waited_for_only_so_long():
    passes = InFlight(limit=1, wait=0.05)
    passes.sent(1)
    assert passes.room() is False
    assert len(passes) == 0 and passes.room()  # forgotten: the next pass is not held up again


def test_a_lost_connection_frees_the_waiting_pass():
    passes = InFlight(limit=1, wait=5.0)
    passes.sent(1)
    threading.Timer(0.05, passes.reset).start()
    started = time.monotonic()
    assert passes.room()
    assert time.monotonic() - started < 4.0
