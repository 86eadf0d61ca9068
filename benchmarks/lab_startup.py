#!/usr/bin/env python3
"""`taprouter lab up` to converged on the triangle example (three routers in OSPF, one eBGP peer).

Prints, per run, the seconds from the start of `up` to: everything built; every BGP session
Established and every OSPF neighbour Full (the protocols); every OSPF database holding every
adjacency (flooded); the routes on the switches and settled (converged, what `lab up` waits for).
Usage: .venv/bin/python benchmarks/lab_startup.py [RUNS]
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from taprouter.labkit import converge  # noqa: E402
from taprouter.labkit.running import RunningLab  # noqa: E402

TOPOLOGY = ROOT / "examples" / "labs" / "triangle" / "triangle.yaml"


def one() -> dict[str, float]:
    start = time.monotonic()
    lab = RunningLab.fresh(TOPOLOGY, wait=False)
    marks = {"built": time.monotonic() - start}
    try:
        while True:
            views_pending = converge.pending(lab.plan)
            protocol_pending = [p for p in views_pending if "database" not in p]
            if not protocol_pending and "protocols" not in marks:
                marks["protocols"] = time.monotonic() - start
            if not views_pending:
                marks["flooded"] = time.monotonic() - start
                break
            if time.monotonic() - start > 60:
                raise SystemExit(f"not converged in 60 s: {views_pending}")
            time.sleep(converge.POLL / 2)
        lab.wait_converged()
        marks["converged"] = time.monotonic() - start
    finally:
        problems = lab.down()
        if problems:
            raise SystemExit(f"teardown: {problems}")
    return marks


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    results = []
    for i in range(runs):
        marks = one()
        results.append(marks)
        print(f"run {i + 1}: " + ", ".join(f"{k} {v:.1f} s" for k, v in marks.items()), flush=True)
    for key in ("built", "protocols", "flooded", "converged"):
        values = [r[key] for r in results]
        print(f"{key:>9}: median {statistics.median(values):.1f} s, min {min(values):.1f}, max {max(values):.1f}")


if __name__ == "__main__":
    main()
