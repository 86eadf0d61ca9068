"""The taprouter command line: run, check, status, down."""

from __future__ import annotations

import argparse
import logging
import sys

from . import config as config_mod


def _load(path: str) -> config_mod.Config:
    try:
        return config_mod.load(path)
    except config_mod.ConfigError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        raise SystemExit(2) from None


def cmd_check(args) -> int:
    config = _load(args.config)
    ports = sum(len(r.ports) for r in config.routers)
    print(f"{args.config}: OK ({len(config.routers)} router(s), {ports} port(s))")
    return 0


def cmd_run(args) -> int:
    from .daemon import StartError, run
    config = _load(args.config)
    try:
        return run(config)
    except StartError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def cmd_status(args) -> int:
    from . import status
    statuses = status.collect(_load(args.config))
    print(status.to_json(statuses) if args.json else status.to_text(statuses))
    return 0


def cmd_down(args) -> int:
    from .down import down
    for router in _load(args.config).routers:
        removed = down(router)
        print(f"router {router.name}: removed {', '.join(removed) if removed else 'nothing (already down)'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="taprouter", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func, text in (("run", cmd_run, "run the daemon in the foreground"),
                             ("check", cmd_check, "validate a config file"),
                             ("status", cmd_status, "show routers, TAPs and offload state"),
                             ("down", cmd_down, "remove TAPs, holder and netns a router left behind")):
        p = sub.add_parser(name, help=text)
        p.add_argument("-c", "--config", required=True, help="the taprouter YAML file")
        p.set_defaults(func=func)
        if name == "status":
            p.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    if not args.verbose:
        # os-ken logs every connection at INFO; keep ours readable.
        logging.getLogger("os_ken").setLevel(logging.WARNING)
    # pyroute2 logs every netlink message at DEBUG, which drowns ours.
    logging.getLogger("pyroute2").setLevel(logging.INFO)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
