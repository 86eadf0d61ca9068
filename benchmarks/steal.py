"""CPU time the hypervisor gave to other guests while a stage ran ("steal" in /proc/stat).

The benchmark machines are shared virtual machines. On 2026-11-26 the same code loaded a
million routes in 8.7 s and, minutes earlier, in 16.0 s; during the slow run the hypervisor
took 18 s of CPU from this 2-core guest, and every process's CPU time per route rose with
it (the daemon's from 4.8 to 7.3 µs, Open vSwitch's from 6.6 to 10.6). So each timed stage
records the steal it saw, and the harness runs the timed stages again when one saw more
than LIMIT of the machine's CPU stolen (see routes.main).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
# Of the CPU the machine had over a stage (wall time x CPUs). Quiet runs here saw 0-0.2%;
# disturbed ones 3-10%.
LIMIT = float(os.environ.get("BENCH_STEAL_LIMIT", "0.01"))


def parse_steal(stat: str) -> float:
    """Seconds of steal on the aggregate `cpu` line of /proc/stat (its eighth value)."""
    for line in stat.splitlines():
        fields = line.split()
        if fields and fields[0] == "cpu":
            return int(fields[8]) / CLK_TCK if len(fields) > 8 else 0.0
    raise ValueError("no aggregate cpu line in /proc/stat")


def stolen_s() -> float:
    return parse_steal(Path("/proc/stat").read_text())


@dataclass(frozen=True)
class Steal:
    stolen_s: float
    share: float  # of the CPU time the machine had while the stage ran

    def figures(self) -> dict:
        return {"steal_s": round(self.stolen_s, 2), "steal_pct": round(self.share * 100, 2)}


class Meter:
    """`with Meter() as m: ...`, then `m.steal`: what the hypervisor took meanwhile."""

    def __init__(self, cpus: int | None = None) -> None:
        self.cpus = cpus or os.cpu_count() or 1
        self.steal: Steal | None = None

    def __enter__(self) -> "Meter":
        self._wall, self._stolen = time.monotonic(), stolen_s()
        return self

    def __exit__(self, *exc) -> None:
        wall = max(time.monotonic() - self._wall, 1e-9)
        taken = max(stolen_s() - self._stolen, 0.0)
        self.steal = Steal(taken, taken / (wall * self.cpus))


def disturbed(attempt: dict, stages, limit: float = LIMIT) -> list[str]:
    """The stages of one attempt that saw at least `limit` of the machine's CPU stolen."""
    return [stage for stage in stages if attempt.get(stage, {}).get("steal_pct", 0.0) >= limit * 100]


def least_disturbed(attempts: list[dict], stage: str) -> tuple[int, dict]:
    """(index, figures) of the attempt whose `stage` saw the least steal; the earliest on a tie.

    Chosen by the disturbance, never by the time: a fast attempt is not preferred for being fast.
    """
    ran = [(attempt[stage].get("steal_pct", 0.0), i) for i, attempt in enumerate(attempts) if stage in attempt]
    if not ran:
        raise KeyError(f"no attempt ran {stage}")
    _share, index = min(ran)
    return index, attempts[index][stage]
