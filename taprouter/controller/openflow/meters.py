"""Typed OpenFlow 1.3 meters: a packet rate with one drop band, as control-plane policing uses."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MeterSpec:
    """A meter in packets per second (OFPMF_PKTPS | OFPMF_BURST) with one drop band."""

    rate: int  # packets per second
    burst: int  # packets

    @staticmethod
    def pps(rate: int) -> "MeterSpec":
        """A tenth of a second's worth of burst: a frame train keeps its head, a flood does not."""
        return MeterSpec(rate, rate // 10)
