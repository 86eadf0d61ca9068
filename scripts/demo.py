#!/usr/bin/env python3
"""`make demo`: the router on a built-in lab, with pings a newcomer can watch.

Builds an Open vSwitch bridge (userspace datapath, fail-mode secure) with three
hosts in network namespaces, runs `taprouter run` on examples/demo.yaml, and
shows the kernel answering through the switch, then a policy added and deleted
from the command line. The web UI runs too (`taprouter web`, on the config's
web.listen or DEMO_WEB_LISTEN), with a demo admin whose one-time password is
printed. Ctrl-C tears everything down; DEMO_ONESHOT=1 runs once and exits
(non-zero if anything failed); DEMO_SCREENSHOTS=DIR saves the web UI's pages.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from taprouter import config as configuration  # noqa: E402
from taprouter.control.client import ControlClient, ControlError, ControlUnavailable  # noqa: E402
from taprouter.controller.openflow.pipeline import Table  # noqa: E402
from taprouter.lab import Lab, sh  # noqa: E402

CONFIG = ROOT / "examples" / "demo.yaml"
TAPROUTER = str(ROOT / ".venv" / "bin" / "taprouter")
RUN_DIR = Path("/run/taprouter-demo")
POLICY = "no-icmp-h1-h3"


def say(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise SystemExit(f"demo: timed out waiting for {what}")


def forget_policies(config) -> None:
    """The demo's policy database (examples/demo.yaml keeps it in RUN_DIR): gone with the demo, so
    that the next run starts without policies."""
    path = Path(config.database.split("sqlite:///", 1)[-1])
    if path.parent == RUN_DIR:
        for leftover in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm"),
                         path.with_name(path.name + "-journal")):
            leftover.unlink(missing_ok=True)


def relay_counters(socket: Path) -> dict:
    """The router's relay counters, as the daemon answers them on its control socket."""
    try:
        return ControlClient(socket).get("/v1/status", router="demo")["routers"][0]["relay"] or {}
    except (ControlUnavailable, ControlError):
        return {}


def ping(netns: str, target: str, count: int, interval: str = "0.2") -> subprocess.CompletedProcess:
    proc = subprocess.run(["ip", "netns", "exec", netns, "ping", "-c", str(count), "-i", interval, "-W", "1",
                           target], text=True, capture_output=True)
    print("\n".join(proc.stdout.strip().splitlines()[-2:]))
    return proc


def taprouter(env: dict, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([TAPROUTER, *args], env=env, text=True, capture_output=True)
    print((proc.stdout + proc.stderr).rstrip())
    return proc


def policy_packets(env: dict) -> int:
    proc = subprocess.run([TAPROUTER, "policy", "list", "-c", str(CONFIG), "--json"], env=env, text=True,
                          capture_output=True)
    try:
        return next((p["packets"] for p in json.loads(proc.stdout) if p["name"] == POLICY), 0)
    except ValueError:
        return 0


def metrics_line(listen, prefix: str) -> str:
    """The first line of /metrics that starts with `prefix`."""
    url = f"http://{listen.host}:{listen.port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return next((line for line in text.splitlines() if line.startswith(prefix)), f"(no {prefix} in {url})")


def start_web(env: dict, log_path: Path) -> tuple[subprocess.Popen | None, str, str]:
    """The web UI and a demo admin with a fresh password: the process, the URL and the password."""
    made = subprocess.run([TAPROUTER, "web", "createuser", "-c", str(CONFIG), "demo-admin", "--role", "admin"],
                          env=env, text=True, capture_output=True, stdin=subprocess.DEVNULL)
    found = re.search(r"password \(shown once\): (\S+)", made.stdout)
    if made.returncode != 0 or not found:
        print(f"demo: the web UI's admin could not be made: {made.stderr.strip()}")
        return None, "", ""
    listen = os.environ.get("DEMO_WEB_LISTEN") or \
        f"{configuration.load(CONFIG).web.listen.host}:{configuration.load(CONFIG).web.listen.port}"
    web = subprocess.Popen([TAPROUTER, "web", "-c", str(CONFIG), "--listen", listen], env=env,
                           stdout=open(log_path, "w"), stderr=subprocess.STDOUT)
    url = f"http://{listen}"

    def answers() -> bool:
        if web.poll() is not None:
            return True
        try:
            with urllib.request.urlopen(url + "/accounts/login/", timeout=2):
                return True
        except OSError:
            return False

    wait_for(answers, 30, "the web UI")
    if web.poll() is not None:
        print(f"demo: the web UI stopped: {log_path.read_text()[-2000:]}")
        return None, "", ""
    return web, url, found.group(1)


def screenshots(url: str, password: str) -> None:
    folder = os.environ.get("DEMO_SCREENSHOTS")
    if folder and url:
        say(f"screenshots of the web UI into {folder}")
        subprocess.run([str(ROOT / ".venv" / "bin" / "python"), str(ROOT / "scripts" / "screenshots.py"), url,
                        "demo-admin", password, folder, "demo", "10.30.0.1"])


def policy_scene(env: dict, metrics, web_url: str = "", web_password: str = "") -> int:
    """A policy from the command line: h1's pings to h3 dropped by the switch, counted, then let
    through again once it is deleted. Returns the number of steps that went wrong."""
    failures = 0
    say("a policy: drop ICMP from h1's subnet to h3's (taprouter policy add)")
    added = taprouter(env, "policy", "add", "-c", str(CONFIG), "--router", "demo", "--name", POLICY,
                      "--action", "drop", "--src", "10.0.1.0/24", "--dst", "10.0.3.0/24", "--proto", "icmp",
                      "--comment", "make demo")
    failures += added.returncode != 0
    say("demoh1 pings demoh3 at 10.0.3.2: the switch drops the requests")
    failures += ping("demoh1", "10.0.3.2", 5).returncode == 0  # it must fail
    # The daemon reads the policy's counters from the switch every 2 s.
    deadline = time.monotonic() + 10
    while policy_packets(env) < 5 and time.monotonic() < deadline:
        time.sleep(0.5)
    failures += policy_packets(env) < 5
    say("taprouter policy list: the policy on the switch, and the packets it dropped")
    taprouter(env, "policy", "list", "-c", str(CONFIG))
    if metrics is not None:
        say("and in /metrics (one line of it)")
        print(metrics_line(metrics, f'taprouter_policy_packets_total{{router="demo",policy="{POLICY}"}}'))
    screenshots(web_url, web_password)
    say("taprouter policy del, and demoh1 pings demoh3 again")
    failures += taprouter(env, "policy", "del", "-c", str(CONFIG), "--router", "demo", "--name", POLICY).returncode != 0
    failures += ping("demoh1", "10.0.3.2", 3).returncode != 0
    return failures


def main() -> int:
    oneshot = os.environ.get("DEMO_ONESHOT") == "1"
    config = configuration.load(CONFIG)
    env = dict(os.environ, TAPROUTER_RUN_DIR=str(RUN_DIR))
    lab = Lab("demo", 6653, dpid=0xD1)
    daemon = None
    web = None
    web_url = web_password = ""
    peers: list[subprocess.Popen] = []
    log_path = RUN_DIR.with_suffix(".log")
    failures = 0
    try:
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        say("building the lab: OVS bridge demobr (userspace datapath) and three hosts")
        subprocess.run([TAPROUTER, "down", "-c", str(CONFIG)], env=env, capture_output=True)
        lab.down()  # whatever a crashed earlier run left
        forget_policies(config)
        lab.up()
        hosts = [lab.add_host(f"h{n}", n, f"10.0.{n}.2/24", f"2001:db8:{n}::2/64",
                              f"10.0.{n}.1", f"2001:db8:{n}::1") for n in (1, 2, 3)]
        say("starting BIRD peers: OSPF on demoh2 (stub 10.20.0.0/24), eBGP on demoh3 (announces 10.30.0.0/24)")
        for host, net, conf in ((hosts[1], "10.20.0.1/24", "demo-peer-ospf.conf"),
                                (hosts[2], "10.30.0.1/24", "demo-peer-bgp.conf")):
            host.run("ip", "addr", "add", net, "dev", "lo")
            peers.append(host.popen("bird", "-f", "-c", str(ROOT / "examples" / "bird" / conf),
                                    "-s", str(RUN_DIR / f"{host.name}.ctl"),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        say(f"starting taprouter run -c {CONFIG.relative_to(ROOT)} (log: {log_path})")
        log = open(log_path, "w")
        daemon = subprocess.Popen([TAPROUTER, "run", "-c", str(CONFIG)], stderr=log, env=env)
        wait_for(lambda: "reconciled" in log_path.read_text() or daemon.poll() is not None, 30,
                 "the router to program the switch")
        if daemon.poll() is not None:
            print(log_path.read_text())
            return 1
        web, web_url, web_password = start_web(env, RUN_DIR.with_name(RUN_DIR.name + "-web.log"))
        if web is not None:
            say(f"the web UI: {web_url}/  user demo-admin, password {web_password} (this run's only)")
        else:
            failures += 1
        for host in hosts:
            for target in (str(host.gateway4), str(host.gateway6)):
                say(f"{host.name} ({host.ipv4.ip}) pings its router address {target}")
                proc = subprocess.run(["ip", "netns", "exec", host.name, "ping", "-c", "3", "-i", "0.2",
                                       "-W", "2", target], text=True, capture_output=True)
                print(proc.stdout.strip().splitlines()[-2:] and "\n".join(proc.stdout.strip().splitlines()[-2:]))
                failures += proc.returncode != 0
        say("waiting for OSPF and BGP to bring the peers' networks into the router's kernel")
        wait_for(lambda: all(net in sh("ip", "-n", "demo-r", "route") for net in ("10.20.0.0/24", "10.30.0.0/24")),
                 60, "the routes learned by OSPF and BGP")
        print(sh("ip", "-n", "demo-r", "route").strip())
        for target in ("10.20.0.1", "10.30.0.1"):
            say(f"demoh1 pings {target}, learned by {'OSPF' if '20' in target else 'BGP'} and offloaded")
            proc = subprocess.run(["ip", "netns", "exec", "demoh1", "ping", "-c", "10", "-i", "0.1", "-W", "2",
                                   target], text=True, capture_output=True)
            print("\n".join(proc.stdout.strip().splitlines()[-2:]))
            failures += proc.returncode != 0
        counters_before = relay_counters(config.control.socket)
        for src, dst in ((hosts[0], hosts[1]), (hosts[0], hosts[2]), (hosts[1], hosts[2])):
            for target in (str(dst.ipv4.ip), str(dst.ipv6.ip)):
                say(f"{src.name} pings {dst.name} at {target} across subnets, through the router")
                proc = subprocess.run(["ip", "netns", "exec", src.name, "ping", "-c", "20", "-i", "0.05",
                                       "-W", "2", target], text=True, capture_output=True)
                print("\n".join(proc.stdout.strip().splitlines()[-2:]))
                failures += proc.returncode != 0
        punted = relay_counters(config.control.socket).get("to_tap", 0) - counters_before.get("to_tap", 0)
        say("transit traffic is switched, not punted: the FIB flows and their packet counters")
        print(sh("ovs-ofctl", "-O", "OpenFlow13", "dump-flows", lab.bridge, f"table={int(Table.FIB4)}").strip())
        print(sh("ovs-ofctl", "-O", "OpenFlow13", "dump-flows", lab.bridge, f"table={int(Table.FIB6)}").strip())
        print(f"\n  120 transit echo requests and their 120 replies cost {punted} PacketIns in all "
              "(ARP/ND and the packets sent before a neighbour was resolved); the rest never left "
              "the switch.")
        failures += policy_scene(env, config.metrics.listen, web_url, web_password)
        say("taprouter status")
        print(subprocess.run([TAPROUTER, "status", "-c", str(CONFIG)], env=env, text=True,
                             capture_output=True).stdout)
        flows = sh("ovs-ofctl", "-O", "OpenFlow13", "--no-stats", "dump-flows", lab.bridge).splitlines()
        per_table = {}
        for line in flows:
            if "cookie=" in line:
                table = line.split("table=")[1].split(",")[0] if "table=" in line else "0"
                per_table[table] = per_table.get(table, 0) + 1
        say("flows per table (" + ", ".join(f"{t.value} {t.name.lower()}" for t in Table) + "): "
            + ", ".join(f"table {t}: {n}" for t, n in sorted(per_table.items())))
        if oneshot:
            say("DEMO_ONESHOT=1: done" + (f", {failures} ping(s) FAILED" if failures else ", all pings answered"))
        else:
            say("the lab stays up. Try: ip netns exec demoh1 ping 10.30.0.1 | "
                f"TAPROUTER_RUN_DIR={RUN_DIR} .venv/bin/taprouter status -c {CONFIG.relative_to(ROOT)} | "
                f".venv/bin/taprouter policy list -c {CONFIG.relative_to(ROOT)} | "
                f"ip netns exec demo-r birdc -s {RUN_DIR / 'demo' / 'bird.ctl'} show protocols | "
                + (f"the web UI at {web_url}/ (demo-admin, {web_password}) | " if web is not None else "")
                + "Ctrl-C tears it all down")
            stop = threading.Event()
            signal.signal(signal.SIGINT, lambda *_: stop.set())
            signal.signal(signal.SIGTERM, lambda *_: stop.set())
            while not stop.wait(1.0):
                pass
    finally:
        say("tearing down")
        if web is not None and web.poll() is None:
            web.terminate()
            try:
                web.wait(10)
            except subprocess.TimeoutExpired:
                web.kill()
        if daemon is not None and daemon.poll() is None:
            daemon.terminate()
            try:
                daemon.wait(10)
            except subprocess.TimeoutExpired:
                daemon.kill()
        for peer in peers:
            peer.terminate()
            peer.wait(10)
        subprocess.run([TAPROUTER, "down", "-c", str(CONFIG)], env=env)
        lab.down()
        forget_policies(config)
        try:
            RUN_DIR.rmdir()
        except OSError:
            pass  # something else lives there: left alone
    return 1 if failures else 0


if __name__ == "__main__":
    # SIGTERM tears down like Ctrl-C does.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    sys.exit(main())
