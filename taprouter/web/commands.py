"""`taprouter web` (serve the UI) and `taprouter web createuser` (make a user from the shell)."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Callable

from ..config import Config

Load = Callable[[str], Config]


def add_parser(sub: argparse._SubParsersAction, load: Load, common: argparse.ArgumentParser,
               config_argument: Callable[[argparse.ArgumentParser], None]) -> None:
    web = sub.add_parser("web", help="serve the web UI, or create its users", parents=[common],
                         description="Serve the web UI (taprouter web -c FILE), or create a user "
                                     "(taprouter web createuser -c FILE NAME --role ROLE).")
    config_argument(web)
    web.add_argument("--listen", metavar="ADDR:PORT", help="where to serve (default: the config's web.listen)")
    web.add_argument("--insecure", action="store_true",
                     help="serve a non-loopback address over plain HTTP (no web.tls)")
    web.set_defaults(func=lambda args: _serve(args, load))
    verbs = web.add_subparsers(dest="web_verb")
    create = verbs.add_parser("createuser", help="create a user of the web UI", parents=[common],
                              description="Create a user of the web UI, with a role.")
    config_argument(create)
    create.add_argument("name", help="the user name")
    create.add_argument("--role", required=True, choices=("viewer", "operator", "admin"))
    create.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    create.set_defaults(func=lambda args: _createuser(args, load))


def _serve(args: argparse.Namespace, load: Load) -> int:
    from ..db.setup import DatabaseProblem
    from .server import RefusedListen, parse_listen, serve

    if not args.config:
        print("error: taprouter web: -c/--config is required", file=sys.stderr)
        return 2
    config = load(args.config)
    try:
        listen = parse_listen(args.listen) if args.listen else config.web.listen
        return serve(config, listen, args.insecure)
    except RefusedListen as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except DatabaseProblem as exc:
        print(f"error: database: {exc}", file=sys.stderr)
        return 1


def _password(args: argparse.Namespace) -> str | None:
    """The password to set, or None to generate one (no terminal to ask on)."""
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise ValueError("--password-stdin: standard input had no password")
        return password
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if first != getpass.getpass("Password (again): "):
            raise ValueError("the two passwords differ")
        if not first:
            raise ValueError("an empty password")
        return first
    return None


def _createuser(args: argparse.Namespace, load: Load) -> int:
    from ..db.setup import DatabaseProblem
    from .setup import setup

    config = load(args.config)
    try:
        password = _password(args)
        setup(config)
        from . import roles  # Django's models exist once it is set up

        created = roles.create_user(args.name, roles.role(args.role), password)
    except ValueError as exc:  # RoleError is one
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except DatabaseProblem as exc:
        print(f"error: database: {exc}", file=sys.stderr)
        return 1
    print(f"created user {created.user} ({created.role.value})")
    if created.password is not None:
        print(f"password (shown once): {created.password}")
    return 0
