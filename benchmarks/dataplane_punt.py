"""The data-plane benchmark's punt-path measurements: RTT to the router and packet-rate ladders.

1. punt-path RTT against the plain L2 pair; 4. punt throughput in packets per second, both
ways, at a ladder of offered rates and unpaced (see benchmarks/dataplane.py).
"""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
import time

from benchmarks.dataplane_lab import ROOT, BenchLab, cpu_snap, cpu_ticks, log, percentile, ratio, run
from benchmarks.dataplane_report import relay_loss
from taprouter.controller.openflow.pipeline import Table

PYTHON = sys.executable
UDP_PORT = 9  # discard; closed on both ends, which is fine: we count frames, not replies

# The traffic generator flood() runs inside a namespace.
SENDER = ROOT / "benchmarks" / "flood_sender.py"


class PuntBench(BenchLab):
    """The punt-path measurements, on the lab and counters of BenchLab; they record into
    self.results. flood() reads self.ovs_pid, which Bench.run() sets."""

    # -- 1. RTT --------------------------------------------------------------------------------

    def pings(self, host, target: str, count: int, interval: float) -> tuple[list[float], int]:
        proc = run("ping", "-n", "-c", count, "-i", interval, "-W", 1, target, netns=host.name,
                   check=False, timeout=count * (interval + 0.01) + 30)
        times = [float(m) for m in re.findall(r"time=([\d.]+) ms", proc.stdout)]
        return times, count - len(times)

    def bench_rtt(self) -> None:
        count, chunks = 1000, 4  # alternate punt and L2 in chunks, so drift hits both alike
        log(f"RTT: {count} pings h1 -> 10.0.1.1 (punt) and h11 -> h12 (L2), interleaved in {chunks} chunks")
        samples = {"punt": ([], 0), "l2": ([], 0)}
        for _ in range(chunks):
            for kind, host, target in (("punt", self.h1, "10.0.1.1"), ("l2", self.l2a, "10.9.0.2")):
                times, lost = self.pings(host, target, count // chunks, 0.005)
                samples[kind] = (samples[kind][0] + times, samples[kind][1] + lost)
        out = {}
        for kind, (times, lost) in samples.items():
            if not times:
                raise RuntimeError(f"no {kind} ping was answered")
            out[kind] = {"n": len(times), "lost": lost, "p50_ms": percentile(times, 50),
                         "p99_ms": percentile(times, 99), "mean_ms": round(sum(times) / len(times), 4),
                         "min_ms": min(times), "max_ms": max(times)}
        out["ratio_punt_over_l2"] = {"p50": ratio(out["punt"]["p50_ms"], out["l2"]["p50_ms"]),
                                     "p99": ratio(out["punt"]["p99_ms"], out["l2"]["p99_ms"])}
        self.results["rtt"] = out

    # -- 4. punt throughput --------------------------------------------------------------------

    def flood(self, ns: str, dst: str, rate: float, seconds: float, count_rx, port: int = UDP_PORT,
              src: str = "") -> dict:
        """Send UDP (TCP resets to port 179, from src) from netns `ns` to dst; count_rx() reads the
        receive-side counter."""
        count = int(rate * seconds) if rate > 0 else (40000 if self.quick else 80000)
        max_time = seconds + 1 if rate > 0 else seconds
        rx0 = count_rx()
        cpu0 = {"daemon": cpu_ticks(self.daemon.pid), "ovs": cpu_ticks(self.ovs_pid)}
        machine0, children0 = cpu_snap(), resource.getrusage(resource.RUSAGE_CHILDREN)
        c0 = time.monotonic()
        sender = subprocess.Popen(["ip", "netns", "exec", ns, PYTHON, str(SENDER), dst, str(port),
                                   str(count), str(rate), str(max_time), src],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
        self.procs.append(sender)
        samples = [(time.monotonic(), rx0)]
        while sender.poll() is None:
            samples.append((time.monotonic(), count_rx()))
            time.sleep(0.01)
        stats = json.loads(sender.stdout.read())
        children1 = resource.getrusage(resource.RUSAGE_CHILDREN)  # the sender is now reaped
        # Let queues (OVS -> controller socket, TAP ring) drain: wait until the counter is still.
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < 0.5 and time.monotonic() - stats["t1"] < 20:
            value = count_rx()
            if value != samples[-1][1]:
                quiet_since = time.monotonic()
            samples.append((time.monotonic(), value))
            time.sleep(0.01)
        c1 = time.monotonic()
        cpu1 = {"daemon": cpu_ticks(self.daemon.pid), "ovs": cpu_ticks(self.ovs_pid)}
        machine1 = cpu_snap()
        delivered = samples[-1][1] - rx0
        # When the counter reached its final value: the end of the delivery window.
        last_rise = min(t for t, v in samples if v == samples[-1][1])
        send_time = max(1e-6, stats["t1"] - stats["t0"])
        window = max(send_time, last_rise - stats["t0"])
        hz = os.sysconf("SC_CLK_TCK")
        cpu = {k: None if cpu0[k] is None or cpu1[k] is None else
               round(100 * (cpu1[k] - cpu0[k]) / hz / (c1 - c0), 1) for k in cpu0}
        cpu["sender"] = round(100 * ((children1.ru_utime + children1.ru_stime)
                                     - (children0.ru_utime + children0.ru_stime)) / (c1 - c0), 1)
        # Machine-wide busy time in "% of one CPU", less what the daemon, vswitchd and the sender
        # used: roughly what the kernel's softirqs and everything else on the machine (other
        # sessions' tests) took meanwhile.
        machine_pct = 100 * os.cpu_count() * (machine1[1] - machine0[1]) / max(1, machine1[0] - machine0[0])
        cpu["others"] = round(machine_pct - sum(v or 0 for v in cpu.values()), 1)
        return {"offered_pps": round(stats["sent"] / send_time) if rate <= 0 else rate,
                "send_s": round(send_time, 3),
                # How long deliveries went on after the sender stopped: the queue in front of the
                # relay (mostly the OpenFlow TCP connection), i.e. the extra delay a punted frame saw.
                "drain_s": round(max(0.0, last_rise - stats["t1"]), 3),
                "achieved_send_pps": round(stats["sent"] / send_time),
                "sent": stats["sent"], "send_errors": stats["errors"], "delivered": delivered,
                "delivered_pps": round(delivered / window),
                "loss_pct": round(100 * (1 - delivered / stats["sent"]), 2) if stats["sent"] else None,
                "cpu_pct_daemon": cpu["daemon"], "cpu_pct_ovs_vswitchd": cpu["ovs"],
                "cpu_pct_sender": cpu["sender"], "cpu_pct_rest_of_machine": cpu["others"]}

    def bench_punt_rate(self) -> None:
        seconds = 0.5 if self.quick else 1.0
        rates = [1000, 2000, 5000, 7500, 10000, 15000, 20000, 0]  # 0: unpaced, bounded in count and time
        # Make sure the router kernel knows h1 (the reverse flood must not wait for ARP).
        run("ping", "-n", "-c", 2, "-i", 0.2, "-W", 2, "10.0.1.2", netns=self.router_ns, timeout=20)
        out = {}

        def udp_in(ns: str) -> int:
            # Every datagram the receiving kernel took in: to a closed port (NoPorts), or not.
            snmp = self.snmp(ns)
            return snmp["InDatagrams"] + snmp["NoPorts"] + snmp["InErrors"]

        def tcp_in(ns: str) -> int:
            return self.snmp(ns, "Tcp")["InSegs"]  # counted before any check, as the kernel says

        # (direction, sender netns, destination, port, rates, receive counter, counted at, punt flow)
        # UDP to the router's address is policed (port 1's local meter); TCP to port 179 from h1, a
        # BGP neighbour in the router's BIRD file, is the BGP class, never metered, so it shows what
        # the relay itself carries.
        directions = (
            ("host_to_kernel", self.h1.name, "10.0.1.1", UDP_PORT, rates, lambda: udp_in(self.router_ns),
             "router netns /proc/net/snmp Udp InDatagrams+NoPorts+InErrors", "nw_dst=10.0.1.1 "),
            ("host_to_kernel_bgp_class", self.h1.name, "10.0.1.1", 179,
             [5000, 10000, 20000, 30000, 40000, 50000, 60000, 0], lambda: tcp_in(self.router_ns),
             "router netns /proc/net/snmp Tcp InSegs", "tp_dst=179"),
            ("kernel_to_host", self.router_ns, "10.0.1.2", UDP_PORT, rates, lambda: udp_in(self.h1.name),
             "h1 /proc/net/snmp Udp InDatagrams+NoPorts+InErrors", None),
        )
        for direction, ns, dst, port, steps_rates, count_rx, counted_at, punt_flow in directions:
            self.context(f"punt_rate_{direction}")
            steps = []
            relay0 = self.relay_now()  # each step's "after" is the next step's "before"
            for rate in steps_rates:
                log(f"punt rate {direction}: {'unpaced' if rate == 0 else f'{rate} pps'} for {seconds:g} s")
                quiet = self.wait_quiet(5)
                ports0 = self.port_stats()
                tap0 = self.netdev(self.router_ns, self.taps[1])
                punt0 = self.flow_packets(Table.PUNT, punt_flow) if punt_flow else 0
                step = self.flood(ns, dst, rate, seconds, count_rx, port, "10.0.1.2")
                ports1 = self.port_stats()
                tap1 = self.netdev(self.router_ns, self.taps[1])
                relay1 = self.relay_now()
                step["machine_before"] = quiet
                step["relay"] = {k: relay1[k] - relay0[k] for k in relay1 if relay1[k] - relay0[k]}
                relay0 = relay1
                step["router_tap"] = {k: tap1[k] - tap0[k] for k in tap1}
                step["ovs_port_1"] = self.port_delta(ports0, ports1, (1,)).get(1, {})
                if punt_flow:
                    # The userspace datapath's flow stats reach OpenFlow a little late: read until still.
                    count, last = self.flow_packets(Table.PUNT, punt_flow), None
                    while count != last:
                        time.sleep(0.3)
                        count, last = self.flow_packets(Table.PUNT, punt_flow), count
                    step["ovs_punt_flow_n_packets"] = count - punt0
                # Sustained: (almost) nothing lost, and delivered about as fast as offered, not
                # merely absorbed by queues and trickled out after the sender stopped.
                step["sustained"] = (step["loss_pct"] is not None and step["loss_pct"] <= 1.0
                                     and step["delivered_pps"] >= 0.9 * step["offered_pps"])
                steps.append(step)
                time.sleep(0.2)
            out[direction] = {
                "counted_at": counted_at,
                "steps": steps,
                "max_delivered_pps": max(s["delivered_pps"] for s in steps),
                "max_sustained_offered_pps": max((s["offered_pps"] for s in steps if s["sustained"]),
                                                 default=None),
            }
            if punt_flow:  # what matched the punt flow and never reached the TAP, over all steps
                out[direction]["punt_flow_to_tap_lost"] = sum(relay_loss(s) for s in steps)
        self.results["punt_rate"] = out
