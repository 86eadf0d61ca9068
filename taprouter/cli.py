"""The taprouter command line: run, check, status, reload, down, policy, web and lab."""

from __future__ import annotations

import argparse
import logging
import sys

from . import __version__, config as config_mod, paths


def _load(path: str | None) -> config_mod.Config:
    try:
        return config_mod.load(path or paths.default_config())
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
            continue
        from .routing.birdlint import warnings
        for warning in warnings(router.bird.config.read_text(errors="replace")):
            print(f"warning: {router.bird.config}: {warning}", file=sys.stderr)
    if failed:
        return 2
    ports = sum(len(r.ports) for r in config.routers)
    vlans = sum(len(p.vlans) for r in config.routers for p in r.ports)
    print(f"{args.config}: OK ({len(config.routers)} router(s), {ports} port(s)"
          f"{f', {vlans} VLAN(s)' if vlans else ''})")
    return 0


def _chosen(args, config: config_mod.Config | None = None) -> list:
    """The config's routers, or only the one --router names; exit 2 when it names none."""
    config = config or _load(args.config)
    wanted = getattr(args, "router", None)
    if wanted is not None and wanted not in {r.name for r in config.routers}:
        print(f"error: no router named {wanted!r} in {args.config or paths.default_config()}", file=sys.stderr)
        raise SystemExit(2)
    return [r for r in config.routers if wanted in (None, r.name)]


def cmd_reload(args) -> int:
    """Ask the daemon to re-read the config file and apply what changed; with no daemon, only
    reconfigure each router's BIRD from its file."""
    from .control.client import ControlClient, ControlError, ControlUnavailable
    config = _load(args.config)
    try:
        # The daemon may start a BIRD that is not running, which can take its whole 10 s start
        # window: wait longer than the default. (--router may name a router the file no longer
        # has: the daemon removes it.)
        answer = ControlClient(config.control.socket, timeout=30).post(
            "/v1/reload", {"router": getattr(args, "router", None)})
    except ControlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ControlUnavailable as exc:
        routers = _chosen(args, config)
        print(f"note: {exc}; reconfiguring BIRD only", file=sys.stderr)
        return _reload_bird_only(routers)
    for line in answer["changes"]:
        print(line)
    if answer["applied"] and not answer["changes"]:
        print(f"{config.path}: no change to ports or addresses")
    for error in answer["errors"]:
        print(f"error: {error}", file=sys.stderr)
    if not answer["applied"]:
        print("error: nothing changed", file=sys.stderr)
        return 1
    status = 1 if answer["errors"] else 0  # a router added that did not start
    for result in answer["bird"]:
        if result["reloaded"]:
            print(f"router {result['router']}: BIRD {result['message']}")
        else:
            print(f"error: router {result['router']}: BIRD not reconfigured: {result['message']}", file=sys.stderr)
            status = 1
    return status


def _reload_bird_only(routers) -> int:
    """Validate each router's BIRD file, then `configure` its BIRD in place (no restart)."""
    from .routing.bird import BirdConfigError, BirdPaths, validate
    from .routing.birdctl import BirdControl, BirdError
    status = 0
    for router in routers:
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
    from .routing.birdconf import StarterError, starter
    config = _load(args.config)
    routers = [r for r in config.routers if args.router in (None, r.name)]
    if not routers:
        print(f"error: no router named {args.router!r} in {args.config}", file=sys.stderr)
        return 2
    if len(routers) > 1:
        print("error: the file has several routers; choose one with --router", file=sys.stderr)
        return 2
    try:
        text = starter(routers[0], hello=args.ospf_hello)
    except StarterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(text)
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
    _chosen(args, config)
    report = status.collect(config, args.router)
    print(status.to_json(report) if args.json else status.to_text(report))
    return 0 if all(entry["healthy"] for entry in report.routers) else 1


def cmd_down(args) -> int:
    from .down import down
    for router in _chosen(args):
        done = down(router)
        print(f"router {router.name}: removed "
              f"{', '.join(done.removed) if done.removed else 'nothing (already down)'}")
        for note in done.kept:
            print(f"router {router.name}: {note}")
    return 0


COMMANDS = (
    ("run", cmd_run, "run the daemon in the foreground",
     "Run the daemon in the foreground; it exits cleanly on SIGTERM or SIGINT."),
    ("check", cmd_check, "validate a config file (and its BIRD files)",
     "Validate the config file, its TLS files and its BIRD files; exit 2 with one line per problem."),
    ("status", cmd_status, "show routers, TAPs, BIRD and offload state",
     "Show each router as the daemon (or, without one, the host) tells it. Exit 0 when every router "
     "is healthy (daemon running, switch connected, BIRD up where configured), 1 otherwise, 2 for "
     "usage and config errors."),
    ("reload", cmd_reload, "apply the config file (and BIRD's) without a restart",
     "Have the daemon re-read the config file and apply what changed (ports, addresses), then "
     "reconfigure BIRD in place (sessions stay up). A file that fails validation, or changes what "
     "needs a restart, changes nothing. Exit 1 when nothing changed or BIRD refused."),
    ("bird-config", cmd_bird_config, "print a starter BIRD 2 config for a router",
     "Print a starter BIRD 2 config: router id, device, direct and kernel protocols, OSPFv2 on the "
     "IPv4 TAPs and OSPFv3 on the IPv6 ones."),
    ("down", cmd_down, "remove TAPs, holder, BIRD and netns a router left behind",
     "Remove what a router leaves behind on purpose: BIRD, the TAPs, their holder and the netns."),
)
LOG_LEVELS = ("debug", "info", "warning", "error")


def _common() -> argparse.ArgumentParser:
    """Options every subcommand takes, after its name as well as before it. SUPPRESS as the default
    keeps a subcommand's unset option from overwriting one given before the subcommand."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="log debug messages (as --log-level debug)")
    common.add_argument("--log-level", choices=LOG_LEVELS, default=argparse.SUPPRESS,
                        help="the least severe messages logged (default info)")
    common.add_argument("--log-format", choices=("text", "json"), default=argparse.SUPPRESS,
                        help="text (default), or one JSON object per line")
    return common


def _config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", default=None,
                        help=f"the taprouter YAML file (default: ${paths.CONFIG_ENV}, "
                             f"else {paths.DEFAULT_CONFIG})")


def parser() -> argparse.ArgumentParser:
    common = _common()
    top = argparse.ArgumentParser(prog="taprouter", description=__doc__, parents=[common])
    top.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, func, text, description in COMMANDS:
        p = sub.add_parser(name, help=text, description=description, parents=[common])
        _config_argument(p)
        p.set_defaults(func=func)
        if name in ("status", "reload", "down"):
            p.add_argument("--router", help="only this router")
        if name == "status":
            p.add_argument("--json", action="store_true", help="machine-readable output")
        if name == "check":
            p.add_argument("--strict", action="store_true", help="fail (exit 2) on warnings as well")
        if name == "bird-config":
            p.add_argument("--router", help="which router (needed when the file has several)")
            p.add_argument("--ospf-hello", type=int, default=10, metavar="SECONDS",
                           help="OSPF hello interval, 1 to 16383; dead and wait are four times it (default 10)")
    from .policy import commands as policy_commands
    policy_commands.add_parser(sub, _load, common, _config_argument)
    from .web import commands as web_commands
    web_commands.add_parser(sub, _load, common, _config_argument)
    from .labkit import commands as lab_commands
    lab_commands.add_parser(sub, common)
    return top


def main(argv: list[str] | None = None) -> int:
    from . import logsetup
    args = parser().parse_args(argv)
    if getattr(args, "config", "") is None:
        args.config = paths.default_config()
    level = "debug" if getattr(args, "verbose", False) else getattr(args, "log_level", "info")
    __import__("pyroute2")  # importing it resets its logger to DEBUG: do that before we set it
    logsetup.configure(level, getattr(args, "log_format", "text"))
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
