#!/usr/bin/env python3
"""`make demo`: the router on a built-in lab, with pings a newcomer can watch.

Builds an Open vSwitch bridge (userspace datapath, fail-mode secure) with three
hosts in network namespaces, runs `taprouter run` on examples/demo.yaml, and
shows the kernel answering through the switch. Ctrl-C tears everything down;
DEMO_ONESHOT=1 runs once and exits (non-zero if anything failed).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from taprouter.lab import Lab, sh  # noqa: E402

CONFIG = ROOT / "examples" / "demo.yaml"
TAPROUTER = str(ROOT / ".venv" / "bin" / "taprouter")
RUN_DIR = Path("/run/taprouter-demo")


def say(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise SystemExit(f"demo: timed out waiting for {what}")


def main() -> int:
    oneshot = os.environ.get("DEMO_ONESHOT") == "1"
    env = dict(os.environ, TAPROUTER_RUN_DIR=str(RUN_DIR))
    lab = Lab("demo", 6653, dpid=0xD1)
    daemon = None
    log_path = RUN_DIR.with_suffix(".log")
    failures = 0
    try:
        say("building the lab: OVS bridge demobr (userspace datapath) and three hosts")
        lab.down()
        lab.up()
        hosts = [lab.add_host(f"h{n}", n, f"10.0.{n}.2/24", f"2001:db8:{n}::2/64",
                              f"10.0.{n}.1", f"2001:db8:{n}::1") for n in (1, 2, 3)]
        say(f"starting taprouter run -c {CONFIG.relative_to(ROOT)} (log: {log_path})")
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        log = open(log_path, "w")
        daemon = subprocess.Popen([TAPROUTER, "run", "-c", str(CONFIG)], stderr=log, env=env)
        wait_for(lambda: "reconciled" in log_path.read_text() or daemon.poll() is not None, 30,
                 "the router to program the switch")
        if daemon.poll() is not None:
            print(log_path.read_text())
            return 1
        for host in hosts:
            for target in (str(host.gateway4), str(host.gateway6)):
                say(f"{host.name} ({host.ipv4.ip}) pings its router address {target}")
                proc = subprocess.run(["ip", "netns", "exec", host.name, "ping", "-c", "3", "-i", "0.2",
                                       "-W", "2", target], text=True, capture_output=True)
                print(proc.stdout.strip().splitlines()[-2:] and "\n".join(proc.stdout.strip().splitlines()[-2:]))
                failures += proc.returncode != 0
        say("taprouter status")
        print(subprocess.run([TAPROUTER, "status", "-c", str(CONFIG)], env=env, text=True,
                             capture_output=True).stdout)
        say("the flows taprouter installed (ovs-ofctl dump-flows demobr)")
        print(sh("ovs-ofctl", "-O", "OpenFlow13", "--no-stats", "dump-flows", lab.bridge))
        if oneshot:
            say("DEMO_ONESHOT=1: done" + (f", {failures} ping(s) FAILED" if failures else ", all pings answered"))
        else:
            say("the lab stays up; try: ip netns exec demoh1 ping 10.0.1.1   (Ctrl-C to tear down)")
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        say("tearing down")
        if daemon is not None and daemon.poll() is None:
            daemon.terminate()
            try:
                daemon.wait(10)
            except subprocess.TimeoutExpired:
                daemon.kill()
        subprocess.run([TAPROUTER, "down", "-c", str(CONFIG)], env=env)
        lab.down()
    return 1 if failures else 0


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    sys.exit(main())
