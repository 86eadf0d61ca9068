"""`taprouter lab up|down|status|exec`: the command line of the lab (docs/lab.md)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from . import build, topology as topology_mod
from .converge import NotConverged
from .journal import Journal
from .plan import RUN_BASE, LabPlan, make
from .running import LabError, RunningLab


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    lab = sub.add_parser("lab", help="build a topology of routers, hosts and peers to test a config",
                         parents=[common],
                         description="Build a topology file into namespaces, Open vSwitch bridges and daemons.")
    verbs = lab.add_subparsers(dest="verb", required=True)
    p = verbs.add_parser("up", help="build the lab and wait until its routing has converged",
                         description="Build the lab and wait until its routing has converged.", parents=[common])
    p.add_argument("file", help="the topology YAML file")
    p.add_argument("--timeout", type=float, help="seconds to wait for convergence (default: the file's, or 30)")
    p.add_argument("--no-wait", action="store_true", help="build, and do not wait for convergence")
    p.set_defaults(func=_up)
    p = verbs.add_parser("down", help="remove everything `lab up` made (also after it failed halfway)",
                         description="Remove everything `lab up` made (also after it failed halfway).", parents=[common])
    p.add_argument("file", help="the topology YAML file")
    p.set_defaults(func=_down)
    p = verbs.add_parser("status", help="what has not converged yet (exit 0 when everything has)",
                         description="What has not converged yet (exit 0 when everything has).", parents=[common])
    p.add_argument("file", help="the topology YAML file")
    p.set_defaults(func=_status)
    p = verbs.add_parser("check", help="check a topology file (and its daemons' configs) without building",
                         description="Check a topology file (and its daemons' configs) without building.", parents=[common])
    p.add_argument("file", help="the topology YAML file")
    p.set_defaults(func=_check)
    p = verbs.add_parser("exec", help="run a command in a node: taprouter lab exec NODE -- CMD",
                         description="Run a command in a node: taprouter lab exec NODE -- CMD.", parents=[common])
    p.add_argument("-f", "--file", help="the topology file (needed only when several labs are up)")
    p.add_argument("node")
    p.add_argument("cmd", nargs=argparse.REMAINDER)
    p.set_defaults(func=_exec)


def _problems(exc: topology_mod.TopologyError) -> int:
    for problem in exc.problems:
        print(f"error: {problem}", file=sys.stderr)
    return 2


def _check(args) -> int:
    try:
        topology = topology_mod.load(args.file)
    except topology_mod.TopologyError as exc:
        return _problems(exc)
    problems = topology_mod.refusals(topology)
    if problems:
        return _problems(topology_mod.TopologyError(problems))
    print(f"{topology.path}: OK ({len(topology.routers)} router(s), {len(topology.hosts)} host(s), "
          f"{len(topology.peers)} peer(s), {len(topology.links)} link(s))")
    return 0


def _up(args) -> int:
    start = time.monotonic()
    try:
        lab = RunningLab.up(args.file, wait=False)
    except topology_mod.TopologyError as exc:
        return _problems(exc)
    except (LabError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    built = time.monotonic() - start
    if not args.no_wait:
        try:
            lab.wait_converged(args.timeout)
        except (NotConverged, LabError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            print(f"the lab stays up to look at; `taprouter lab down {args.file}` removes it", file=sys.stderr)
            return 1
    print(lab.reach())
    state = "built" if args.no_wait else "converged"
    print(f"{state} in {time.monotonic() - start:.1f} s (built in {built:.1f} s)")
    return 0


def _plan_of(path: str) -> LabPlan | None:
    """The plan of a lab that is up from this file, from its journal; None if none is."""
    try:
        topology = topology_mod.load(path)
    except topology_mod.TopologyError:
        topology = None
    if topology is not None:
        plan = make(topology)
        if plan.state_file.exists():
            return plan
    return None


def _down(args) -> int:
    path = Path(args.file).resolve()
    # The journal alone says what to remove: the file may have changed since `up`.
    journal = Journal(make_state_path(path))
    if not journal.exists():
        print(f"{path}: no lab is up from it (no {journal.path})")
        return 0
    problems = build.teardown(journal)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if not problems:
        print(f"{path}: lab removed")
    return 1 if problems else 0


def make_state_path(path: Path) -> Path:
    from .plan import default_prefix
    return RUN_BASE / default_prefix(path) / "state.jsonl"


def _status(args) -> int:
    plan = _plan_of(args.file)
    if plan is None:
        print(f"{args.file}: no lab is up from it", file=sys.stderr)
        return 2
    pending = RunningLab(plan).pending()
    for line in pending:
        print(line)
    if not pending:
        print("converged: every BGP session Established, every OSPF neighbour Full")
    return 1 if pending else 0


def _exec(args) -> int:
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        cmd = [os.environ.get("SHELL", "/bin/sh")]
    plans = [_plan_of(args.file)] if args.file else _labs_up()
    plans = [p for p in plans if p is not None and args.node in p.topology.node_names()]
    if not plans:
        print(f"error: no lab that is up has a node {args.node!r}", file=sys.stderr)
        return 2
    if len(plans) > 1:
        print(f"error: several labs have a node {args.node!r}: name one with -f FILE "
              f"({', '.join(str(p.topology.path) for p in plans)})", file=sys.stderr)
        return 2
    try:
        netns = RunningLab(plans[0]).netns(args.node)
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    os.execvp("ip", ["ip", "netns", "exec", netns, *cmd])
    return 127  # not reached


def _labs_up() -> list[LabPlan]:
    plans = []
    for state in sorted(RUN_BASE.glob("*/state.jsonl")):
        lab = next((e for e in Journal(state).entries() if e.kind == "lab"), None)
        if lab is None:
            continue
        plan = _plan_of(lab.data["topology"])
        if plan is not None:
            plans.append(plan)
    return plans
