"""The data-plane benchmark's printed report (benchmarks/dataplane.py writes the figures)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def fmt_bps(bps: float) -> str:
    return f"{bps / 1e9:.2f} Gbit/s" if bps >= 1e9 else f"{bps / 1e6:.0f} Mbit/s"


def relay_loss(step: dict) -> int:
    """Frames that matched the punt flow but were not written to the TAP."""
    return step["ovs_punt_flow_n_packets"] - step["relay"].get("to_tap", 0)


def report(meta: dict, res: dict, notes: list[str], out: Path) -> None:
    print()
    print(f"taprouter data-plane benchmark  {meta['date']}  {meta['cpus']} CPUs  "
          f"load {meta['loadavg_before']}  busy {meta['cpu_busy_before_pct']}% before  "
          f"{'(quick)' if meta['quick'] else ''}")
    for phase, m in res.get("machine_before_phase", {}).items():
        print(f"   before {phase}: {m['cpu_busy_pct']}% CPU busy after waiting {m['waited_s']} s, "
              f"load {m['loadavg1']}, "
              f"other OVS bridges: {', '.join(m['other_ovs_bridges']) or 'none'}")
    rtt = res["rtt"]
    print("\n1. RTT (ms)                      p50       p99      mean    lost")
    for key, label in (("punt", "punt: h1 -> router 10.0.1.1"), ("l2", "L2:   h11 -> h12")):
        r = rtt[key]
        print(f"   {label:<28} {r['p50_ms']:8.3f}  {r['p99_ms']:8.3f}  {r['mean_ms']:8.3f}  {r['lost']:6d}")
    print(f"   {'ratio punt / L2':<28} {rtt['ratio_punt_over_l2']['p50']:8.2f}  "
          f"{rtt['ratio_punt_over_l2']['p99']:8.2f}")
    tp = res["throughput"]
    print(f"\n2. TCP throughput (iperf3, {tp['routed']['seconds']} s)   received      retransmits  "
          f"frames lost in OVS (of rx)")
    for key, label in (("routed", "routed: h1 -> h2"), ("l2", "L2:     h11 -> h12")):
        r = tp[key]
        rx = r["ovs_port_deltas"].get(1 if key == "routed" else 11, {}).get("rx", 0)
        print(f"   {label:<28} {fmt_bps(r['received_bps']):>14}  {r['retransmits']!s:>10}  "
              f"{r['lost_in_ovs']:>10} ({r['lost_in_ovs'] / max(1, rx):.1%})")
    print(f"   {'ratio routed / L2':<28} {tp['ratio_routed_over_l2']:14.3f}")
    rp = res.get("routed_path", {})
    print(f"   routed path offloaded (/32 host flows with groups in the IPv4 FIB table): "
          f"{'yes' if rp.get('host_flows_present') else 'NO, it went through the kernel'}, "
          f"checked {rp.get('seconds_from_first_ping')} s after the first warm-up ping")
    pi = res["packet_ins_during_routed_run"]
    print("\n3. PacketIns during the routed run")
    print(f"   relay to_tap delta {pi['relay_to_tap']}, to_switch delta {pi['relay_to_switch']}, "
          f"FIB CONTROLLER flows n_packets delta {pi['fib_controller_flows_n_packets']}")
    for k, v in pi["per_flow"].items():
        print(f"     {k}: +{v}")
    print("\n4. punt path rate (UDP, 60-byte frames; TCP resets, 54-byte frames, for the BGP class)")
    for direction, d in res["punt_rate"].items():
        print(f"   {direction} (counted at {d['counted_at']})")
        to_kernel = direction != "kernel_to_host"
        drop_col = "OVS rx drop" if to_kernel else "TAP tx_drop"
        print(f"     offered pps     sent  delivered  delivered pps  loss %  {drop_col:>11}  "
              f"{'flow->TAP' if to_kernel else '':>9}  drain s  CPU%: daemon   ovs  sender  rest")
        for s in d["steps"]:
            where = s["sent"] - s["ovs_punt_flow_n_packets"] if to_kernel else s["router_tap"].get("tx_dropped", 0)
            after_flow = relay_loss(s) if to_kernel else ""
            print(f"     {s['offered_pps']:>11}  {s['sent']:>7}  {s['delivered']:>9}  "
                  f"{s['delivered_pps']:>13}  "
                  f"{s['loss_pct']:>6}  {where:>11}  {after_flow!s:>9}  {s['drain_s']:>7.2f}  "
                  f"{s['cpu_pct_daemon']!s:>12}  "
                  f"{s['cpu_pct_ovs_vswitchd']!s:>4}  {s['cpu_pct_sender']!s:>6}  "
                  f"{s['cpu_pct_rest_of_machine']!s:>5}"
                  f"{'' if s['sustained'] else '  (not sustained)'}")
        print(f"     max delivered {d['max_delivered_pps']} pps; highest offered rate sustained "
              f"(loss <= 1%, delivered >= 90% of offered): {d['max_sustained_offered_pps']} pps")
    print("   OVS rx drop: sent, less the punt flow's packets (lost before OVS's flow table).\n"
          "   flow->TAP: the punt flow's packets less the frames the relay wrote to the TAP (the meter\n"
          "   for policed UDP; the OpenFlow connection and the relay). The relay also writes the\n"
          "   port's other frames (ARP), so a frame or two below zero is no loss.")
    if notes:
        print("\nnotes:")
        for note in notes:
            print(f"   - {note}")
    print(f"\nwritten to {out.relative_to(ROOT)}")
