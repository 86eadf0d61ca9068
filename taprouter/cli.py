"""The taprouter command line: run, check, status, reload, down, policy and lab."""

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
    from .routing.bird import BirdConfigError, validate
    config = _load(args.config)
    for warning in config.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    failed = bool(args.strict and config.warnings)
    if failed:
        print(f"error: {args.config}: {len(config.warnings)} warning(s), and --strict refuses them",
              file=sys.stderr)
    if config.tls is not None:
        from .controller.session.tls import TlsError, context
        try:
            context(config.tls)
        except TlsError as exc:
            print(f"error: {args.config}: openflow.tls.{exc.which}: {exc}", file=sys.stderr)
            failed = True
    for router in config.routers:
        if router.bird is None:
            continue
        try:
            validate(router.bird.config)
        except BirdConfigError as exc:
            print(f"error: {args.config}: routers.{router.name}.bird.config: BIRD refuses it: {exc}",
                  file=sys.stderr)
            failed = True
    if failed:
        return 2
    ports = sum(len(r.ports) for r in config.routers)
    print(f"{args.config}: OK ({len(config.routers)} router(s), {ports} port(s))")
    return 0


def cmd_reload(args) -> int:
    """Validate each router's BIRD file, then `configure` its BIRD in place (no restart)."""
    from . import paths
    from .routing.bird import BirdConfigError, BirdPaths, validate
    from .routing.birdctl import BirdControl, BirdError
    status = 0
    for router in _load(args.config).routers:
        if router.bird is None:
            continue
        try:
            validate(router.bird.config)
            BirdControl(str(BirdPaths.under(paths.router_dir(router.name)).socket)).configure()
            print(f"router {router.name}: BIRD reconfigured from {router.bird.config}")
        except (BirdConfigError, BirdError) as exc:
            print(f"error: router {router.name}: BIRD not reconfigured: {exc}", file=sys.stderr)
            status = 1
    return status


def cmd_bird_config(args) -> int:
    from .routing.birdconf import starter
    config = _load(args.config)
    routers = [r for r in config.routers if args.router in (None, r.name)]
    if not routers:
        print(f"error: no router named {args.router!r} in {args.config}", file=sys.stderr)
        return 2
    if len(routers) > 1:
        print("error: the file has several routers; choose one with --router", file=sys.stderr)
        return 2
    sys.stdout.write(starter(routers[0], hello=args.ospf_hello))
    return 0


def cmd_run(args) -> int:
    from .daemon import StartError, run
    config = _load(args.config)
    for warning in config.warnings:
        logging.getLogger("taprouter.config").warning("%s", warning)
    try:
        return run(config)
    except StartError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def cmd_status(args) -> int:
    """0 when every router is healthy, 1 when one is not, 2 for a bad file or router name."""
    from . import status
    config = _load(args.config)
    if args.router is not None and args.router not in {r.name for r in config.routers}:
        print(f"error: no router named {args.router!r} in {args.config}", file=sys.stderr)
        return 2
    report = status.collect(config, args.router)
    print(status.to_json(report) if args.json else status.to_text(report))
    return 0 if all(entry["healthy"] for entry in report.routers) else 1


def cmd_down(args) -> int:
    from .down import down
    for router in _load(args.config).routers:
        done = down(router)
        print(f"router {router.name}: removed "
              f"{', '.join(done.removed) if done.removed else 'nothing (already down)'}")
        for note in done.kept:
            print(f"router {router.name}: {note}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="taprouter", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func, text in (("run", cmd_run, "run the daemon in the foreground"),
                             ("check", cmd_check, "validate a config file (and its BIRD files)"),
                             ("status", cmd_status, "show routers, TAPs, BIRD and offload state"),
                             ("reload", cmd_reload, "reconfigure BIRD from its file without restarting it"),
                             ("bird-config", cmd_bird_config, "print a starter BIRD 2 config for a router"),
                             ("down", cmd_down, "remove TAPs, holder, BIRD and netns a router left behind")):
        p = sub.add_parser(name, help=text)
        p.add_argument("-c", "--config", required=True, help="the taprouter YAML file")
        p.set_defaults(func=func)
        if name == "status":
            p.add_argument("--json", action="store_true", help="machine-readable output")
            p.add_argument("--router", help="only this router")
        if name == "check":
            p.add_argument("--strict", action="store_true", help="fail (exit 2) on warnings as well")
        if name == "bird-config":
            p.add_argument("--router", help="which router (needed when the file has several)")
            p.add_argument("--ospf-hello", type=int, default=10, metavar="SECONDS",
                           help="OSPF hello interval; dead and wait are four times it (default 10)")
    from .policy import commands as policy_commands
    policy_commands.add_parser(sub, _load)
    from .labkit import commands as lab_commands
    lab_commands.add_parser(sub)
    args = parser.parse_args(argv)
    __import__("pyroute2")  # importing it resets its logger to DEBUG: do that before we set it
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
