#!/usr/bin/env python3
"""`make bench`: runs the route-programming and data-plane benchmarks, writes benchmarks/results.json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    quick = os.environ.get("BENCH_QUICK") == "1"
    status = 0
    for script, extra in (("routes.py", []), ("dataplane.py", ["--quick"] if quick else [])):
        print(f"\n=== benchmarks/{script} ===", flush=True)
        status |= subprocess.call([sys.executable, str(HERE / script), *extra])
    results = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cpus": os.cpu_count()}
    for name in ("routes", "dataplane"):
        path = HERE / f"{name}.json"
        if path.exists():
            results[name] = json.loads(path.read_text())
    (HERE / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {HERE / 'results.json'}")
    return status


if __name__ == "__main__":
    sys.exit(main())
