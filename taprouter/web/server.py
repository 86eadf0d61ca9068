"""`taprouter web`: the UI served by gunicorn (threads, one worker process), HTTPS when the config
has web.tls; a non-loopback address without TLS is refused unless the operator says --insecure."""

from __future__ import annotations

import ipaddress
import logging

from ..config import Config, Listen

LOG = logging.getLogger("taprouter.web")
THREADS = 8  # requests at once: a few browsers, each polling one part a second


class RefusedListen(Exception):
    """The address may not be served as asked; the message says why and what to do."""


def check_listen(listen: Listen, tls: bool, insecure: bool) -> None:
    if tls or insecure:
        return
    if not ipaddress.ip_address(listen.host).is_loopback:
        raise RefusedListen(f"{listen.host}:{listen.port} is not a loopback address and web.tls is not set: "
                            "passwords would cross the network in clear (set web.tls, or pass --insecure)")


def parse_listen(text: str) -> Listen:
    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
        number = int(port)
    except ValueError:
        raise RefusedListen(f"--listen: {text!r} is not ADDRESS:PORT") from None
    if not 0 < number < 65536:
        raise RefusedListen(f"--listen: port {number} is not in 1..65535")
    return Listen(host, number)


def bind(listen: Listen) -> str:
    return f"[{listen.host}]:{listen.port}" if ":" in listen.host else f"{listen.host}:{listen.port}"


def serve(config: Config, listen: Listen, insecure: bool) -> int:
    """Serve until SIGTERM or SIGINT (gunicorn's master handles them)."""
    from gunicorn.app.base import BaseApplication

    from .setup import setup

    tls = config.web.tls
    check_listen(listen, tls is not None, insecure)
    setup(config, secure=tls is not None)  # Django and the database, once, before the worker forks
    from django.core.wsgi import get_wsgi_application

    application = get_wsgi_application()
    options = {"bind": [bind(listen)], "workers": 1, "worker_class": "gthread", "threads": THREADS,
               "accesslog": None, "errorlog": "-", "loglevel": "info", "proc_name": "taprouter-web",
               "graceful_timeout": 5, "timeout": 60, "preload_app": True}
    if tls is not None:
        options.update(certfile=str(tls.cert), keyfile=str(tls.key))

    class Application(BaseApplication):
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)
            # Newer gunicorn opens a control socket of its own under $HOME, shared by every
            # instance: two UIs (or tests) would fight over it, and nothing here uses it.
            if "control_socket_disable" in self.cfg.settings:
                self.cfg.set("control_socket_disable", True)

        def load(self):
            return application

    scheme = "https" if tls is not None else "http"
    LOG.info("web UI on %s://%s/", scheme, bind(listen))
    Application().run()
    return 0
