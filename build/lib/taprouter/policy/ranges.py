"""A port range as the fewest masked matches on a 16-bit field.

OpenFlow matches a TCP or UDP port exactly or under a bit mask, so a range becomes the aligned
power-of-two blocks that tile it: [1024, 65535] is 6 matches, [1, 65535] is 16, and the worst
case, [1, 65534], is 30 (two less than twice the width).
"""

from __future__ import annotations

WIDTH = 16
FULL = (1 << WIDTH) - 1


def masked(low: int, high: int, width: int = WIDTH) -> list[tuple[int, int]]:
    """(value, mask) pairs, in increasing order, whose matches together are exactly [low, high]."""
    full = (1 << width) - 1
    if not 0 <= low <= high <= full:
        raise ValueError(f"{low}-{high} is not a range within 0-{full}")
    blocks = []
    while low <= high:
        # The largest block that starts at `low` (aligned) and ends within the range.
        size = low & -low if low else 1 << width
        while low + size - 1 > high:
            size >>= 1
        blocks.append((low, full & ~(size - 1)))
        low += size
    return blocks
