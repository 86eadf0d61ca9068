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


def test_a_table_is_copied_smaller_once_it_holds_under_an_eighth_of_its_peak():
    import sys

    table, peak = {}, 0
    for key in range(200_000):
        table[key] = key
    table, peak = gctune.compacted(table, peak)
    assert peak == 200_000
    for key in range(175_000):
        del table[key]
    same, peak = gctune.compacted(table, peak)
    assert same is table and peak == 200_000  # 25,000 left: an eighth of the peak, not under it
    del table[175_000]
    before = sys.getsizeof(table)
    smaller, peak = gctune.compacted(table, peak)
    assert smaller is not table and smaller == table and peak == len(table) == 24_999
    assert sys.getsizeof(smaller) * 4 < before


def test_small_tables_are_left_as_they_are():
    table = dict.fromkeys(range(1000))
    assert gctune.compacted(table, 50_000) == (table, 50_000)  # a peak under SHRINK_FROM: no copy


def test_the_kernel_mirror_gives_back_the_slots_of_a_withdrawn_table():
    import sys

    from taprouter import prefix
    from taprouter.routing.mirror import KernelMirror

    mirror, entry = KernelMirror(), (0, None)
    keys = [prefix.pack(4, n << 8, 24) for n in range(100_000)]
    mirror.apply_routes([(pk, entry, False) for pk in keys])
    full = sys.getsizeof(mirror.routes)
    mirror.apply_routes([(pk, entry, True) for pk in keys[:95_000]])
    assert len(mirror.routes) == 5_000 and set(mirror.routes) == set(keys[95_000:])
    assert sys.getsizeof(mirror.routes) * 8 < full
