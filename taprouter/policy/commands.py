"""`taprouter policy add|set|enable|disable|del|list|show|export|import`: the store from a shell.

Each change is stored first, then the daemon is told over its control socket; a daemon that is not
running reads the policies when it starts, so that is a note, not an error. A refused change prints
`error: FIELD: message` and exits 2 with nothing stored.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable

from ..config import Config
from .model import PolicyError

# Flags of add (and set) -> model.parse's field names.
FLAGS = (("--priority", "priority", "N", "0..999, the higher first (default 100)"),
         ("--in-port", "in_port", "N[,N...]", "switch port(s) the packet came in on"),
         ("--src", "src", "PREFIX", "source address or prefix"),
         ("--dst", "dst", "PREFIX", "destination address or prefix"),
         ("--proto", "proto", "PROTO", "tcp, udp, icmp, icmpv6, sctp or a number"),
         ("--sport", "sport", "N[-M]", "source port or range (tcp, udp, sctp)"),
         ("--dport", "dport", "N[-M]", "destination port or range (tcp, udp, sctp)"),
         ("--icmp-type", "icmp_type", "N", "ICMP type (icmp, icmpv6)"),
         ("--action", "action", "ACTION", "drop, permit, forward or police"),
         ("--via", "via", "ADDRESS", "forward's next hop, on a subnet of the router's ports"),
         ("--rate", "rate", "RATE", "police's rate: N pps or N kbps"),
         ("--idle-timeout", "idle_timeout", "S", "expire after S seconds without a packet"),
         ("--hard-timeout", "hard_timeout", "S", "expire S seconds after it is installed"),
         ("--comment", "comment", "TEXT", "free text"))
Load = Callable[[str], Config]


def add_parser(sub: argparse._SubParsersAction, load: Load, common: argparse.ArgumentParser,
               config_argument: Callable[[argparse.ArgumentParser], None]) -> None:
    text = "add, change, list, export and import policies (ACLs, PBR)"
    policy = sub.add_parser("policy", help=text, description=text.capitalize() + ".", parents=[common])
    verbs = policy.add_subparsers(dest="verb", required=True, metavar="VERB")

    def verb(name: str, text: str, run: Callable, named: bool = True) -> argparse.ArgumentParser:
        p = verbs.add_parser(name, help=text, description=text, parents=[common])
        config_argument(p)
        if named:
            p.add_argument("--router", required=True, help="the router (as named in the config file)")
            p.add_argument("--name", required=True, help="the policy's name, unique on its router")
        p.set_defaults(func=lambda args: _guarded(run, args, load))
        return p

    for name, text, run in (("add", "add a policy", _add),
                            ("set", "change some of a policy's fields ('' unsets one)", _set)):
        p = verb(name, text, run)
        for flag, _, metavar, help_text in FLAGS:
            p.add_argument(flag, metavar=metavar, help=help_text)
        p.add_argument("--to-router", nargs="?", const="yes", metavar="yes|no",
                       help="also traffic addressed to the router itself")
        p.add_argument("--disabled", nargs="?", const="yes", metavar="yes|no", help="stored, not installed")
    verb("enable", "enable a policy (an expired one comes back)", _enable)
    verb("disable", "disable a policy (it stays stored)", _disable)
    verb("del", "delete a policy", _delete)
    p = verb("list", "list policies with their state", _list, named=False)
    p.add_argument("--router", help="only this router's")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = verb("show", "show one policy and its state", _show)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = verb("export", "print policies as YAML (for import)", _export, named=False)
    p.add_argument("--router", help="only this router's")
    p = verb("import", "make the routers a YAML file lists hold exactly its policies", _import, named=False)
    p.add_argument("file", help="a file from policy export")
    p.add_argument("--dry-run", action="store_true", help="print the difference, change nothing")


def _guarded(run: Callable, args: argparse.Namespace, load: Load) -> int:
    from . import store

    config = load(args.config)
    try:
        return run(store.Store.open(config), args, config)
    except PolicyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (store.DatabaseProblem, store.DatabaseError) as exc:
        print(f"error: database: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1


def _changes(args: argparse.Namespace) -> dict[str, Any]:
    changes = {field: getattr(args, field) for _, field, _, _ in FLAGS if getattr(args, field) is not None}
    if args.to_router is not None:
        changes["to_router"] = args.to_router
    if args.disabled is not None:
        changes["enabled"] = _negated(args.disabled)
    return changes


def _negated(text: str) -> str:
    """--disabled yes is enabled: no (model.parse reads the words)."""
    from .model import boolean

    return "no" if boolean("disabled", text, False) else "yes"


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr)


def notify(config: Config, router: str, names: list[str], moved: tuple[int, int] | None = None,
           report: Callable[[str], None] = _to_stderr) -> None:
    """Tell the daemon which policies changed, and (`moved`) the store's generation before and
    after the write, when these names are all it changed; the change is stored whatever it answers.
    What the user should know of the answer goes to `report` (stderr; the web UI shows it)."""
    from ..control.client import ControlClient, ControlError, ControlUnavailable

    body: dict[str, Any] = {"router": router, "names": names}
    if moved is not None:
        body["generations"] = list(moved)
    try:
        answer = ControlClient(config.control.socket).post("/v1/policies/changed", body)
    except ControlUnavailable as exc:
        report(f"note: the daemon is not running ({exc}): it reads the policies when it starts")
    except ControlError as exc:
        report(f"warning: the daemon did not take the change ({exc}); it is stored, and the daemon reads it "
               "when it next reads the policies")
    else:
        if not answer.get("accepted", True):
            report(f"warning: the daemon cannot read the policy store ({answer.get('error')}); the switch keeps "
                   "what it had")
        elif not answer.get("applied", True):
            report("note: stored and read by the daemon; the switch has not confirmed it yet (see policy show)")


def _add(store, args, config) -> int:
    from .model import parse

    policy = store.add(parse(args.router, args.name, _changes(args)))
    print(f"router {policy.router}: added policy {policy.name} (id {policy.id})")
    notify(config, policy.router, [policy.name], store.last_write)
    return 0


def _changed(store, outcome, args, config, done: str, same: str) -> int:
    if outcome.changed:
        print(f"router {args.router}: {done} policy {args.name}")
        notify(config, args.router, [args.name], store.last_write)
    else:
        print(f"router {args.router}: policy {args.name} {same}")
    return 0


def _set(store, args, config) -> int:
    return _changed(store, store.update(args.router, args.name, _changes(args)), args, config, "changed", "unchanged")


def _enable(store, args, config) -> int:
    return _changed(store, store.enable(args.router, args.name), args, config, "enabled", "was enabled already")


def _disable(store, args, config) -> int:
    return _changed(store, store.disable(args.router, args.name), args, config, "disabled", "was disabled already")


def _delete(store, args, config) -> int:
    policy_id = store.delete(args.router, args.name)
    print(f"router {args.router}: deleted policy {args.name} (id {policy_id})")
    notify(config, args.router, [args.name], store.last_write)
    return 0


def _items(store, router: str | None) -> list[dict[str, Any]]:
    from . import views
    from .store import effective

    policies = store.policies(router)
    statuses = store.statuses()
    items = [views.as_json(p, effective(p, statuses.get(p.id))) for p in policies]
    items += [views.invalid_json(r.id, r.router, r.name, r.fields, str(r.error)) for r in store.invalid(router)]
    return items


def _list(store, args, config) -> int:
    from . import views

    items = _items(store, args.router)
    print(json.dumps(items, indent=2) if args.json else views.table(items))
    return 0


def _show(store, args, config) -> int:
    from . import views

    items = [i for i in _items(store, args.router) if i["name"] == args.name]
    if not items:
        raise PolicyError("name", f"router {args.router} has no policy {args.name!r}")
    print(json.dumps(items[0], indent=2) if args.json else views.detail(items[0]))
    return 0


def _export(store, args, config) -> int:
    sys.stdout.write(store.export(args.router))
    return 0


def _import(store, args, config) -> int:
    difference = store.import_file(Path(args.file), dry_run=args.dry_run)
    for sign, policies in (("+", difference.adds), ("~", [a for _, a in difference.changes]),
                           ("-", difference.deletes)):
        for policy in policies:
            print(f"{sign} {policy.router} {policy.name}")
    verbs = ("would add", "would change", "would delete") if args.dry_run else ("added", "changed", "deleted")
    counts = (len(difference.adds), len(difference.changes), len(difference.deletes))
    print(f"import{' --dry-run' if args.dry_run else ''}: " + ", ".join(f"{n} {v}" for n, v in zip(counts, verbs))
          + ("" if args.dry_run or difference else " (nothing to do)"))
    if not args.dry_run:
        # One transaction for every router: its generations go with the last router's notification,
        # once the daemon has been told of all of them.
        changed = list(difference.names().items())
        for i, (router, names) in enumerate(changed):
            notify(config, router, names, store.last_write if i == len(changed) - 1 else None)
    return 0
