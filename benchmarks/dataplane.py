#!/usr/bin/env python3
"""Data-plane benchmark: taprouter's punt path and offloaded routing against a plain L2 baseline.

Builds its own lab (an Open vSwitch bridge on the userspace datapath, hosts in
network namespaces), runs `taprouter run` on a generated config, and measures in
one run, so that the ratios compare like with like on the same noisy machine:

1. punt-path RTT: h1 pings its router address (PacketIn -> TAP -> kernel -> TAP ->
   PacketOut), against two hosts on the same bridge joined by one plain flow each way;
2. routed TCP throughput (iperf3, h1 -> h2 through the FIB table and a next-hop group)
   against the same L2 pair;
3. how many PacketIns the routed run caused (the relay's `to_tap` counter and the
   CONTROLLER flows of the FIB tables), which should be about none;
4. punt throughput in packets per second, both ways: UDP host -> router kernel
   (counted on the TAP and in the router's /proc/net/snmp) and router kernel -> host
   (counted on the host's eth0), at a ladder of offered rates and unpaced.

Usage: .venv/bin/python benchmarks/dataplane.py [--quick]
Writes benchmarks/dataplane.json. Everything it creates is named with a unique prefix
and removed at the end, even on failure or Ctrl-C; it signals only processes it started.

The lab, the daemon and the counters are in dataplane_lab.py, the punt-path measurements
(1 and 4) in dataplane_punt.py, the printed report in dataplane_report.py.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.dataplane_lab import log, machine_busy, ratio, run, wait_until  # noqa: E402
from benchmarks.dataplane_punt import PuntBench  # noqa: E402
from benchmarks.dataplane_report import report  # noqa: E402
from taprouter.controller.openflow.pipeline import Table  # noqa: E402

OUT = ROOT / "benchmarks" / "dataplane.json"


# --- the benchmark --------------------------------------------------------------------------

class Bench(PuntBench):
    """The whole run: the lab and punt-path measurements (PuntBench), with the throughput
    measurement here."""

    # -- 2 + 3. throughput ---------------------------------------------------------------------

    def iperf(self, server, client, target: str, seconds: int) -> dict:
        srv = subprocess.Popen(["ip", "netns", "exec", server.name, "iperf3", "-s", "-1", "-p", "5201"],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(srv)
        wait_until(lambda: ":5201" in run("ss", "-ltnH", netns=server.name).stdout, 10, "iperf3 server")
        links = [(None, self.lab.switch_veth(h.port)) for h in (client, server)]
        links += [(h.name, "eth0") for h in (client, server)]
        ports0, links0 = self.port_stats(), self.link_drops(links)
        proc = run("iperf3", "-c", target, "-p", "5201", "-t", seconds, "-J", netns=client.name,
                   check=False, timeout=seconds + 30)
        try:
            srv.wait(10)
        except subprocess.TimeoutExpired:
            srv.terminate()
        ports1, links1 = self.port_stats(), self.link_drops(links)
        try:
            data = json.loads(proc.stdout)
        except ValueError:
            raise RuntimeError(f"iperf3 gave no JSON: {proc.stdout[-500:]} {proc.stderr[-500:]}") from None
        if "error" in data:
            raise RuntimeError(f"iperf3: {data['error']}")
        end = data["end"]
        intervals = [i["sum"]["bits_per_second"] for i in data.get("intervals", [])]
        return {"seconds": seconds,
                "received_bps": end["sum_received"]["bits_per_second"],
                "sent_bps": end["sum_sent"]["bits_per_second"],
                "retransmits": end["sum_sent"].get("retransmits"),
                "min_interval_bps": min(intervals) if intervals else None,
                "zero_intervals": sum(1 for b in intervals if b == 0),
                "ovs_port_deltas": self.port_delta(ports0, ports1, (client.port, server.port)),
                # Frames the client's veth delivered to OVS that OVS never sent on to the server:
                # lost in the userspace datapath (its AF_PACKET receive), not counted as drops.
                "lost_in_ovs": ((ports1[client.port]["rx"] - ports0[client.port]["rx"])
                                - (ports1[server.port]["tx"] - ports0[server.port]["tx"])),
                "veth_drop_deltas": {k: links1[k] - links0[k] for k in links1 if links1[k] - links0[k]}}

    def warm_routed(self) -> None:
        log("warming the routed path (pings both ways until the /32 host flows exist)")
        start = time.monotonic()
        for host, target in ((self.h1, "10.0.2.2"), (self.h2, "10.0.1.2")):
            run("ping", "-n", "-c", 3, "-i", 0.2, "-W", 2, target, netns=host.name, timeout=20)

        def host_flows():
            flows = self.dump_flows(Table.FIB4)
            return all(re.search(rf"nw_dst={ip}[ ,].*group:", flows) for ip in ("10.0.1.2", "10.0.2.2"))
        present = True
        try:
            wait_until(host_flows, 15, "the /32 host flows with next-hop groups in the IPv4 FIB table")
        except TimeoutError:
            present = False
        info = {"host_flows_present": present,
                "seconds_from_first_ping": round(time.monotonic() - start, 2)}
        if not present:
            # Keep what explains it: the kernel's view against the switch's, and the daemon's word.
            status = self.status()
            info["diagnostics"] = {
                "router_neighbours": run("ip", "-n", self.router_ns, "neigh", "show").stdout.splitlines(),
                "router_routes": run("ip", "-n", self.router_ns, "route", "show").stdout.splitlines(),
                "fib4": self.dump_flows(Table.FIB4).splitlines()[1:],
                "status": {k: status.get(k) for k in ("flows_installed", "groups_installed",
                                                      "kernel_routes", "last_reconcile",
                                                      "switch_errors", "netlink_resyncs")},
                "daemon_log_tail": self.log_path.read_text().splitlines()[-15:],
            }
            self.notes.append("the /32 host flows did not appear in the IPv4 FIB table within 15 s of the warm-up "
                              "pings: the routed run went through the kernel (see routed_path.diagnostics)")
            log("WARNING: no /32 host flows in the IPv4 FIB table:\n" + json.dumps(info["diagnostics"], indent=1))
        self.results["routed_path"] = info

    def bench_throughput(self) -> None:
        seconds = 3 if self.quick else 10
        run("ping", "-n", "-c", 3, "-i", 0.2, "-W", 2, "10.9.0.2", netns=self.l2a.name, timeout=20)
        log(f"throughput: iperf3 TCP {seconds} s, L2 baseline h11 -> h12")
        l2 = self.iperf(self.l2b, self.l2a, "10.9.0.2", seconds)
        self.warm_routed()
        relay_before = self.relay_now()
        flows_before = self.controller_flow_packets()
        log(f"throughput: iperf3 TCP {seconds} s, routed h1 -> h2 (10.0.2.2)")
        routed = self.iperf(self.h2, self.h1, "10.0.2.2", seconds)
        flows_after = self.controller_flow_packets()
        relay_after = self.relay_now()
        self.results["throughput"] = {
            "l2": l2, "routed": routed,
            "ratio_routed_over_l2": ratio(routed["received_bps"], l2["received_bps"])}
        per_flow = {k: flows_after.get(k, 0) - flows_before.get(k, 0)
                    for k in sorted(set(flows_before) | set(flows_after))}
        self.results["packet_ins_during_routed_run"] = {
            "relay_to_tap": relay_after["to_tap"] - relay_before["to_tap"],
            "relay_to_switch": relay_after["to_switch"] - relay_before["to_switch"],
            "fib_controller_flows_n_packets": sum(per_flow.values()),
            "per_flow": per_flow,
            "note": "relay deltas span the iperf3 run plus up to ~2 s of status.json refresh on each side",
        }

    # -- run ---------------------------------------------------------------------------------

    def run(self) -> None:
        self.ovs_pid = int(Path("/var/run/openvswitch/ovs-vswitchd.pid").read_text().strip())
        self.build()
        self.start_daemon()
        self.relay_start = self.status()["relay"]
        log("daemon reconciled; first punt ping")
        wait_until(lambda: run("ping", "-n", "-c", 1, "-W", 1, "10.0.1.1", netns=self.h1.name,
                               check=False).returncode == 0, 20, "h1 to reach 10.0.1.1")
        self.context("rtt")
        self.bench_rtt()
        self.context("throughput")
        self.bench_throughput()
        self.bench_punt_rate()
        if self.l2_flow_count() != 2:
            self.notes.append("the L2 baseline flows were gone at the end of the run")
        relay = self.relay_now()
        self.results["relay_counters_whole_run"] = {k: relay[k] - self.relay_start.get(k, 0) for k in relay}
        for key in ("write_errors", "send_dropped", "oversize", "runt", "unknown_port"):
            if relay.get(key):
                self.notes.append(f"relay counter {key}: {relay[key]} since the daemon started "
                                  f"({relay[key] - self.relay_start.get(key, 0)} during the measurements)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 s iperf3 runs and shorter floods")
    parser.add_argument("--tls", action="store_true", help="the switch over TLS rather than TCP")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("dataplane.py needs root (namespaces, Open vSwitch)", file=sys.stderr)
        return 2
    subprocess.run(["bash", str(ROOT / "scripts" / "ovs-start.sh")], check=True, stdout=subprocess.DEVNULL)

    def on_term(signum, _frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)
    signal.signal(signal.SIGTERM, on_term)
    # Also when started in the background, where a shell leaves SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    started = time.monotonic()
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "ovs": run("ovs-vsctl", "--version").stdout.splitlines()[0],
        # The tree moves under a shared checkout: say which taprouter was measured.
        "taprouter_commit": run("git", "-C", ROOT, "rev-parse", "--short", "HEAD",
                                check=False).stdout.strip(),
        "taprouter_tree_dirty": bool(run("git", "-C", ROOT, "status", "--porcelain", "--", "taprouter",
                                         check=False).stdout.strip()),
        "loadavg_before": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
        "cpu_busy_before_pct": round(100 * machine_busy(1.0), 1),
        "other_ovs_bridges": len(run("ovs-vsctl", "list-br").stdout.split()),
        "quick": args.quick,
        "transport": "tls" if args.tls else "tcp",
    }
    if meta["cpu_busy_before_pct"] > 25:
        log(f"note: the machine is {meta['cpu_busy_before_pct']}% busy before the run; figures will be noisy")
    bench = Bench(args.quick, args.tls)
    ok = False
    try:
        bench.run()
        ok = True
    except KeyboardInterrupt:
        log("interrupted")
    except Exception as exc:
        log(f"FAILED: {exc!r}")
        if bench.log_path.exists():
            print("--- daemon log (tail) ---\n" + "\n".join(bench.log_path.read_text().splitlines()[-40:]))
    finally:
        # A second Ctrl-C must not cut the teardown short.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        bench.cleanup()
    if not ok:
        return 1
    meta["prefix"] = bench.prefix
    meta["elapsed_s"] = round(time.monotonic() - started, 1)
    data = {"meta": meta, **bench.results, "notes": bench.notes}
    OUT.write_text(json.dumps(data, indent=2) + "\n")
    report(meta, bench.results, bench.notes, OUT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
