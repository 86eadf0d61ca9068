"""Typed OpenFlow 1.3 meters: a packet rate with one drop band, as control-plane policing uses."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MeterSpec:
    """A meter with one drop band, in packets per second or, with `kbps`, kilobits per second
    (OFPMF_PKTPS or OFPMF_KBPS, with OFPMF_BURST)."""

    rate: int  # packets per second, or kbit/s
    burst: int  # packets, or kbit
    kbps: bool = False

    @staticmethod
    def pps(rate: int) -> "MeterSpec":
        """A tenth of a second's worth of burst: a frame train keeps its head, a flood does not."""
        return MeterSpec(rate, max(1, rate // 10))

    @staticmethod
    def kbps_rate(rate: int) -> "MeterSpec":
        return MeterSpec(rate, max(1, rate // 10), kbps=True)
