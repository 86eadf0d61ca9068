"""gctune: no cyclic collection during a reconcile pass, and the collector back on after it."""

from __future__ import annotations

import gc
import weakref

import pytest

from taprouter import gctune


class Node:
    pass


def test_a_pass_runs_without_the_collector_and_it_is_back_after_even_on_error():
    assert gc.isenabled()
    with gctune.paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(RuntimeError):
        with gctune.paused():
            raise RuntimeError("a failed pass")
    assert gc.isenabled()


def test_a_pause_inside_a_pause_leaves_the_outer_one_in_charge():
    with gctune.paused():
        with gctune.paused():
            pass
        assert not gc.isenabled()
    assert gc.isenabled()


def test_a_cycle_made_during_a_pass_is_collected_after_it():
    with gctune.paused():
        a, b = Node(), Node()
        a.other, b.other = b, a
        gone = weakref.ref(a)
        del a, b
        assert gone() is not None  # reference counting alone cannot free a cycle
    gc.collect()
    assert gone() is None


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_release_hands_freed_heap_memory_back():
    # 150 MB in malloc'd blocks, freed below a block that stays: free() alone keeps the pages.
    blobs = [bytes(1500) for _ in range(100_000)]
    pinned = [bytes(1500) for _ in range(10)]
    filled = _rss_mb()
    del blobs
    freed = _rss_mb()
    assert gctune.release() is True  # glibc, as on Debian
    trimmed = _rss_mb()
    assert pinned and freed - trimmed > 100, (filled, freed, trimmed)
