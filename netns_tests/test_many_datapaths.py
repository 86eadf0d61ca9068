"""Ten switches on one daemon: ten Open vSwitch bridges, each its own router in its own netns with
BIRD and two hosts, all driven by one `taprouter run` (netns_tests/manylab.py).

Each router routes its own traffic and nothing of another's reaches its switch; one switch
disconnecting (`ovs-vsctl del-controller`, which also flushes its flows) or one router's BIRD
failing (killed; its file broken and reloaded) loses not one ping on the other nine, at 50 pps
each; a SIGTERM restart of the daemon loses not one ping on any of the ten and changes nothing
on any switch. One lab for the module: building ten bridges, twenty hosts and ten BIRDs is most
of the time.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import time

import pytest

from manylab import ManyLab, PingTally

COUNT = 10
RATE = 50  # pps per ping
RECONCILE = re.compile(r"router (\S+): reconciled (\d+) flows, (\d+) groups in [\d.]+ ms: (\d+) added, "
                       r"(\d+) modified, (\d+) deleted, (\d+) group changes")


@pytest.fixture(scope="module")
def many(tmp_path_factory, ovs):
    lab = ManyLab(tmp_path_factory.mktemp("many"), COUNT)
    problems: list[str] = []
    try:
        lab.build()
        took = lab.start()
        print(f"daemon with {COUNT} routers ready in {took:.1f} s")
        for i in range(COUNT):  # resolve every neighbour once, so pings measure forwarding only
            result = lab.ping_once(i)
            assert result.returncode == 0, f"router {i}: {result.stdout}{result.stderr}"
        yield lab
    except Exception:
        print(f"daemon log (tail):\n{lab.log_text()[-20000:]}", file=sys.stderr)
        raise
    finally:
        problems = lab.teardown()
    assert not problems, "teardown: " + "; ".join(problems)


def assert_no_loss(tallies: dict[int, PingTally], least: int) -> None:
    print("pings answered/sent per router: " + ", ".join(f"{i}: {len(t.received)}/{t.sent}"
                                                         for i, t in tallies.items()))
    for i, t in tallies.items():
        assert t.last >= least, f"router {i}: only {t.last} pings answered, expected at least {least}"
        assert t.sent - t.last <= 2, f"router {i}: the last {t.sent - t.last} of {t.sent} pings went unanswered"
        assert not t.lost, f"router {i}: {len(t.lost)} of {t.last} pings lost (seq {t.lost[:20]})"


def pinging(lab: ManyLab, routers) -> dict:
    return {i: lab.pinger(i, RATE) for i in routers}


def stop_all(pingers: dict) -> dict[int, PingTally]:
    return {i: p.stop() for i, p in pingers.items()}


def test_each_router_routes_its_own_traffic(many):
    for i in range(COUNT):
        result = many.ping_once(i)
        assert result.returncode == 0, f"router {i}: {result.stdout}{result.stderr}"
        # Nothing of another router's reaches this switch: every address in its flows is its own.
        text = many.dump_flows(i)
        foreign = {m.group(0) for m in re.finditer(r"\b10\.(\d+)\.\d+\.\d+", text) if m.group(1) != str(i + 1)}
        assert not foreign, f"switch {i} holds flows for other routers' addresses {foreign}:\n{text}"
        assert f"10.{i + 1}.2.2" in text, f"switch {i} has no host entry for its h2:\n{text}"


def test_one_switch_disconnecting_disturbs_no_other(many):
    victim = 3
    others = [i for i in range(COUNT) if i != victim]
    pingers = pinging(many, others)
    try:
        time.sleep(1)
        mark = many.log_size()
        many.disconnect(victim)
        many.wait_log(rf"switch {many.labs[victim].dpid:#x} disconnected", since=mark, timeout=10)
        time.sleep(2)  # the others keep pinging with one switch gone
        many.reconnect(victim)
        many.wait_until(lambda: many.punt_flows_installed(victim), timeout=20,
                        message=lambda: f"switch {victim} back with its flows:\n{many.dump_flows(victim)}")
        result = many.ping_once(victim)
        assert result.returncode == 0, f"router {victim} after reconnecting: {result.stdout}"
        time.sleep(1)
        assert all(p.proc.poll() is None for p in pingers.values()), "a ping ended early"
    finally:
        tallies = stop_all(pingers)
    assert many.daemon_alive()
    assert_no_loss(tallies, least=3 * RATE)


def test_one_bird_failing_disturbs_no_other(many):
    killed, broken = 1, 2
    others = [i for i in range(COUNT) if i not in (killed, broken)]
    before = many.bird_pids()
    pingers = pinging(many, others)
    try:
        time.sleep(1)
        # One BIRD killed: the daemon starts a new one for that router only.
        mark = many.log_size()
        os.kill(before[many.routers[killed]], signal.SIGKILL)
        many.wait_log(rf"router {many.routers[killed]}: started BIRD", since=mark, timeout=15)
        # Another router's BIRD file broken and reloaded: refused, that BIRD keeps its old config.
        good = many.bird_config(broken).read_text()
        many.bird_config(broken).write_text(good + "\nthis is not bird syntax;\n")
        result = many.taprouter("reload", "-c", str(many.config_path), "--router", many.routers[broken],
                                check=False)
        assert result.returncode != 0, f"reload of a broken BIRD file succeeded:\n{result.stdout}"
        many.bird_config(broken).write_text(good)
        time.sleep(1)
        assert all(p.proc.poll() is None for p in pingers.values()), "a ping ended early"
    finally:
        tallies = stop_all(pingers)
    assert_no_loss(tallies, least=2 * RATE)
    after = many.wait_until(lambda: (pids := many.bird_pids()) and all(pids.values()) and pids, timeout=15,
                            message=lambda: f"every BIRD running: {many.bird_pids()}")
    assert after[many.routers[killed]] != before[many.routers[killed]]
    unchanged = {name: pid for name, pid in after.items() if name != many.routers[killed]}
    assert unchanged == {name: before[name] for name in unchanged}, (before, after)


def test_daemon_restart_is_hitless_for_all_ten(many):
    for i in range(COUNT):
        many.pin_neighbours(i)
    pingers = pinging(many, range(COUNT))
    try:
        time.sleep(1)
        assert many.stop(signal.SIGTERM) == 0
        took = many.start()
        print(f"SIGTERM restart with {COUNT} routers: ready again in {took:.1f} s")
        time.sleep(1)
        assert all(p.proc.poll() is None for p in pingers.values()), "a ping ended early"
    finally:
        tallies = stop_all(pingers)
    assert_no_loss(tallies, least=2 * RATE)
    log = many.log_text(many._log_offset)
    found = {m.group(1): tuple(int(x) for x in m.groups()[3:]) for m in RECONCILE.finditer(log)}
    assert set(found) == set(many.routers), f"reconciles logged: {found}"
    changed = {name: r for name, r in found.items() if any(r)}
    assert not changed, f"the restarted daemon changed switches (added, modified, deleted, groups): {changed}"
