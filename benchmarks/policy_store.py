#!/usr/bin/env python3
"""The policy store with many policies, on SQLite and on a throwaway PostgreSQL cluster: import,
list (the daemon's read), export, an import that changes nothing, the CLI's list --json, and a
plain-SQL change seen through the generation. Not part of `make bench`: run it by hand,
`.venv/bin/python benchmarks/policy_store.py [N]` (default 10,000)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parent / "tests")]

from pgcluster import Cluster  # noqa: E402
from policyhelp import open_store, write_config  # noqa: E402


def policy_file(path: Path, count: int) -> None:
    """Disjoint /32 drops at one priority (the overlap check's worst case for candidates), and a
    tenth of them port-ranged TCP."""
    lines = ["policies:", "  r1:"]
    for i in range(count):
        dst = f"172.{16 + i // 65536}.{i // 256 % 256}.{i % 256}/32"
        extra = ", proto: tcp, dport: 1024-65535" if i % 10 == 0 else ""
        lines.append(f"  - {{name: p{i:05d}, action: drop, dst: {dst}{extra}, comment: generated}}")
    path.write_text("\n".join(lines) + "\n")


def timed(label: str, func, results: dict):
    start = time.perf_counter()
    value = func()
    results[label] = time.perf_counter() - start
    return value


def measure(url: str, work: Path, count: int) -> dict:
    results: dict[str, float] = {}
    store = open_store(work, url)
    source = work / "policies.yaml"
    policy_file(source, count)
    difference = timed("import (all new)", lambda: store.import_file(source), results)
    assert len(difference.adds) == count
    policies = timed("list (parse every row)", store.policies, results)
    assert len(policies) == count
    timed("statuses", store.statuses, results)
    text = timed("export", store.export, results)
    timed("import again (no change)", lambda: store.import_file(source), results)
    changed = work / "changed.yaml"
    changed.write_text(text.replace("comment: generated", "comment: regenerated"))
    timed("import with every policy changed", lambda: store.import_file(changed), results)
    timed("generation (one poll)", store.generation, results)
    command = [str(Path(sys.executable).with_name("taprouter")), "policy", "list", "--json", "-c",
               str(write_config(work, url))]
    out = timed("CLI list --json (a process)", lambda: subprocess.run(command, capture_output=True, check=True),
                results)
    assert out.stdout.count(b'"name"') == count
    from django.db import connections
    connections[store.alias].close()
    return results


def main() -> int:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    work = Path(tempfile.mkdtemp(prefix="taprouter-bench-policy-"))
    cluster = Cluster()
    try:
        cluster.start()
        cluster.create_database("bench")
        rows = {}
        for backend, url in (("sqlite", f"sqlite:///{work}/sqlite/taprouter.db"), ("postgresql", cluster.url("bench"))):
            (work / backend).mkdir(exist_ok=True)
            rows[backend] = measure(url, work / backend, count)
        print(f"{count} policies          " + "".join(f"{b:>12}" for b in rows))
        for label in rows["sqlite"]:
            print(f"{label:<34}" + "".join(f"{rows[b][label]:>11.3f}s" for b in rows))
    finally:
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
