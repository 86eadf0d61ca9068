#!/usr/bin/env python3
"""BGP to the switch: how long 10,000 prefixes announced by a peer take to become FIB flows, and
how long their withdrawal takes to clear them.

Builds its own lab with the netns tests' fixtures (netns_tests/birdlab.py): an Open vSwitch
bridge, hosts h1..h3, `taprouter run` with BIRD in the router netns, and a peer BIRD in h3
(eBGP, AS 65003) whose static protocol `bulk` holds N /24 routes, disabled. Each round:

  announce: `birdc enable bulk` on the peer, then poll until the router's BIRD has imported all N,
            the router's kernel has N routes from BIRD, and the IPv4 FIB table holds N more flows;
  withdraw: `birdc disable bulk`, then poll until all three are back to where they started.

Prints the times (from the birdc command) at which each stage was complete; asserts nothing
about time. Usage: .venv/bin/python benchmarks/bgp_10k.py [--routes N] [--rounds R] [--json FILE]
[--keep-log FILE].
Everything it creates is named with a unique prefix and removed at the end, even on failure or
Ctrl-C; it signals only processes it started.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import re
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "netns_tests"))
sys.path.insert(0, str(ROOT))

import birdlab  # noqa: E402
from routerlab import run  # noqa: E402

POLL = 0.05  # seconds between polls; each poll costs a few ms (dump-aggregate, birdc, ip route)
BASE = ipaddress.IPv4Network("100.64.0.0/10")  # room for 16,384 /24s


def prefixes(count: int) -> list[str]:
    if count > 2 ** (24 - BASE.prefixlen):
        raise SystemExit(f"at most {2 ** (24 - BASE.prefixlen)} /24s fit in {BASE}")
    start = int(BASE.network_address)
    return [f"{ipaddress.IPv4Address(start + (i << 8))}/24" for i in range(count)]


class Probe:
    """The three counters the benchmark watches."""

    def __init__(self, lab: birdlab.BirdLab):
        self.lab = lab

    def imported(self) -> int:
        out = self.lab.router_birdc("show protocols all peer3")
        match = re.search(r"Routes:\s+(\d+) imported", out)
        return int(match.group(1)) if match else 0

    def kernel(self) -> int:
        out = run("ip", "-n", self.lab.netns, "-4", "route", "show", "proto", "bird", timeout=60).stdout
        return out.count("\n")

    def flows(self) -> int:
        return self.lab.flow_count()


def converge(probe: Probe, targets: dict[str, int], timeout: float) -> dict[str, float]:
    """Poll each counter until it reaches its target; returns seconds to each, from now."""
    start = time.monotonic()
    done: dict[str, float] = {}
    last: dict[str, int] = {}
    while len(done) < len(targets):
        now = time.monotonic() - start
        if now > timeout:
            raise SystemExit(f"not converged within {timeout:g} s: reached {done}, last counts {last}, "
                             f"targets {targets}")
        for name, target in targets.items():
            if name in done:
                continue
            last[name] = getattr(probe, name)()
            if last[name] == target:
                done[name] = time.monotonic() - start
        time.sleep(POLL)
    return done


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--routes", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=120.0, help="per stage, seconds")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--keep-log", type=Path, help="copy the daemon's log here before the teardown")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root: it creates network namespaces, TAPs and an OVS bridge")
    run("bash", str(ROOT / "scripts" / "ovs-start.sh"), timeout=60)

    tmp = Path(tempfile.mkdtemp(prefix="bgp10k-"))
    nets = prefixes(args.routes)
    peer = birdlab.bgp_peer(port=3, asn=65003, routes=[], hold=30,
                            extra=birdlab.static_protocol("bulk", nets, disabled=True))
    lab = birdlab.BirdLab(tmp, peers=[peer], router_extra=birdlab.router_bgp(hold=30))
    results: dict = {"routes": args.routes, "rounds": []}
    # SIGTERM tears down like Ctrl-C does.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        lab.build()
        lab.start()
        lab.wait_protocol("peer3", "Established", timeout=60)
        probe = Probe(lab)
        base = {"imported": probe.imported(), "kernel": probe.kernel(), "flows": probe.flows()}
        print(f"lab {lab.prefix}: BGP Established; before: {base}", flush=True)
        print(f"{'round':>5} {'stage':>9} {'BIRD imported':>14} {'kernel routes':>14} {'the IPv4 FIB table flows':>14}")
        for n in range(1, args.rounds + 1):
            row = {}
            for stage, command, delta in (("announce", "enable bulk", args.routes),
                                          ("withdraw", "disable bulk", 0)):
                targets = {k: v + delta for k, v in base.items()}
                lab.peer(3).birdc(command)
                took = converge(probe, targets, args.timeout)
                row[stage] = took
                print(f"{n:>5} {stage:>9} {took['imported']:>13.2f}s {took['kernel']:>13.2f}s "
                      f"{took['flows']:>13.2f}s", flush=True)
            results["rounds"].append(row)
        for stage in ("announce", "withdraw"):
            times = [r[stage]["flows"] for r in results["rounds"]]
            median = results[f"{stage}_flows_median_s"] = statistics.median(times)
            print(f"{stage}: {args.routes} prefixes to/from the IPv4 FIB table in median {median:.2f} s "
                  f"(min {min(times):.2f}, max {max(times):.2f}; {args.routes / median:,.0f} routes/s)")
        status = lab.fresh_daemon_status()
        results["groups_installed"] = status.get("groups_installed")
        if args.json:
            args.json.write_text(json.dumps(results, indent=2) + "\n")
    finally:
        if args.keep_log and lab.log_path.exists():
            shutil.copy(lab.log_path, args.keep_log)
        problems = lab.teardown()
        shutil.rmtree(tmp, ignore_errors=True)
        if problems:
            print("teardown problems:\n  " + "\n  ".join(problems), file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
