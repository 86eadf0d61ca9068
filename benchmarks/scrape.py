#!/usr/bin/env python3
"""What a /metrics scrape costs the daemon, with a snapshot the size of a real router.

One router, 48 ports, 50 BIRD protocols, 10,000 policies and 1M routes counted
(tests/fakemetrics.py's real_router). The metrics server runs in this process; a separate process
scrapes it N times in a row, so that its parsing costs the daemon nothing. For each scrape the
handler's thread CPU time and wall time are recorded (reading the request, formatting, writing
the 2 MB answer): medians over N, as other work shares the machine.

    .venv/bin/python benchmarks/scrape.py [N]
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from fakemetrics import real_router  # noqa: E402
from taprouter.control import scrape  # noqa: E402
from taprouter.control.scrape import MetricsServer, PolicyText, exposition  # noqa: E402

CLIENT = """
import sys, time, urllib.request
url, n = sys.argv[1], int(sys.argv[2])
for _ in range(n):
    with urllib.request.urlopen(url, timeout=10) as r:
        r.read()
"""


class _Daemon:
    def __init__(self):
        self.snapshot = real_router()

    def metrics(self):
        return self.snapshot


def _ms(values: list[float]) -> str:
    ordered = sorted(values)
    return (f"median {statistics.median(ordered) * 1000:.2f} ms, p10 {ordered[len(ordered) // 10] * 1000:.2f}, "
            f"p90 {ordered[len(ordered) * 9 // 10] * 1000:.2f}")


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    daemon = _Daemon()
    snapshot = daemon.snapshot
    text = PolicyText()
    whole = b"".join(exposition(snapshot, text))
    series = sum(1 for line in whole.splitlines() if not line.startswith(b"#"))

    formatting = []
    for _ in range(n):
        started = time.thread_time()
        exposition(snapshot, text)
        formatting.append(time.thread_time() - started)

    # The worst case: every policy renamed since the last scrape, so every template is rebuilt.
    router = snapshot.routers[0]
    renamed = [replace(snapshot, routers=(replace(router, policies=replace(
        router.policies, names=tuple(f"{name}-{i}" for name in router.policies.names))),))
               for i in range(2)]
    rebuilt = []
    for i in range(n):
        started = time.thread_time()
        exposition(renamed[i % 2], text)
        rebuilt.append(time.thread_time() - started)

    cpu, wall = [], []
    handle = scrape._Handler.handle

    def timed(self):
        started, clock = time.thread_time(), time.perf_counter()
        handle(self)
        cpu.append(time.thread_time() - started)
        wall.append(time.perf_counter() - clock)

    scrape._Handler.handle = timed
    server = MetricsServer("127.0.0.1", 0, daemon)
    server.start()
    try:
        subprocess.run([sys.executable, "-c", CLIENT, f"http://127.0.0.1:{server.port}/metrics", str(n)],
                       check=True, timeout=600)
    finally:
        server.stop()
        scrape._Handler.handle = handle
    result = {"scrapes": n, "bytes": len(whole), "series": series,
              "format_cpu_ms": statistics.median(formatting) * 1000,
              "format_renamed_cpu_ms": statistics.median(rebuilt) * 1000,
              "scrape_cpu_ms": statistics.median(cpu) * 1000,
              "scrape_wall_ms": statistics.median(wall) * 1000}
    print(f"{n} scrapes of {len(whole):,} bytes ({series:,} series)")
    print(f"  formatting alone, CPU: {_ms(formatting)}")
    print(f"  formatting with every policy renamed since the last scrape, CPU: {_ms(rebuilt)}")
    print(f"  whole scrape in the daemon, CPU: {_ms(cpu)}")
    print(f"  whole scrape in the daemon, wall: {_ms(wall)}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
