"""Runs os-ken in-process (native thread hub, no eventlet) with the taprouter app."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from pathlib import Path

from . import gctune, logcap, paths
from .config import Config

LOG = logging.getLogger("taprouter")
ECHO_INTERVAL = 10  # seconds between echo requests to each switch
ECHO_UNANSWERED = 6  # unanswered echo requests before a switch is given up (a minute or so)


class StartError(Exception):
    pass


def _check_listen(host: str, port: int) -> None:
    """os-ken binds in a background thread and only logs a failure; fail loudly here instead."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise StartError(f"cannot listen for switches on {host}:{port}: {exc.strerror}") from None


def _control_room(config: Config, core):
    """The policy source, the control socket and /metrics. Each refuses to start loudly (a socket
    another daemon answers on, a port taken); a database that cannot be read is not fatal: the
    switch keeps its policies, and the source keeps trying."""
    from .control.scrape import MetricsServer
    from .control.server import ControlServer, ControlSocketError
    from .controller.view import DaemonState
    from .policy.source import PolicySource
    from .policy.store import Store

    routers = {r.name: r for r in core.routers.values()}
    source = PolicySource(lambda: Store.open(config, user="daemon"), routers)
    view = DaemonState(core, source)
    control = ControlServer(config.control.socket, view)
    try:
        control.start()
    except (ControlSocketError, OSError) as exc:
        raise StartError(f"control.socket: {exc}") from None
    metrics = None
    if config.metrics.listen is not None:
        listen = config.metrics.listen
        metrics = MetricsServer(listen.host, listen.port, view)
        try:
            metrics.start()
        except OSError as exc:
            control.stop()
            raise StartError(f"metrics.listen: cannot serve /metrics on {listen.host}:{listen.port}: "
                             f"{exc.strerror}") from None
    return control, metrics, source, view


def log_files(config: Config) -> list[Path]:
    """The logs of each router's holder and BIRD, which write to them for as long as they live."""
    from .bridge.holder import HolderClient
    from .routing.bird import BirdPaths
    dirs = [paths.router_dir(r.name) for r in config.routers]
    return [*(HolderClient(d).log_path for d in dirs), *(BirdPaths.under(d).log for d in dirs)]


def run(config: Config) -> int:
    # Imported here so that `taprouter check` and `status` stay fast and need no os-ken.
    from os_ken import cfg
    from os_ken.base.app_manager import AppManager

    from .controller.session import tls
    from .controller.core import RouterCore

    _check_listen(config.listen.host, config.listen.port)
    try:
        tls_context = tls.context(config.tls) if config.tls is not None else None
    except tls.TlsError as exc:
        raise StartError(f"openflow.tls.{exc.which}: {exc}") from None
    cfg.CONF(args=[], project="os_ken")
    cfg.CONF.set_override("ofp_listen_host", config.listen.host)
    cfg.CONF.set_override("ofp_tcp_listen_port", config.listen.port)
    # A switch that stops answering (unplugged, its host gone, a firewall in between) sends no
    # close: ask for an echo every ECHO_INTERVAL s and give it up after ECHO_UNANSWERED
    # unanswered ones (os-ken's default asks none). A switch answers in turn, after the flow_mods
    # sent before: a million-route burst is 10-20 s of work for Open vSwitch here, well inside.
    # A switch that reconnects meanwhile is taken at once; the old connection ends quietly.
    cfg.CONF.set_override("echo_request_interval", ECHO_INTERVAL)
    cfg.CONF.set_override("maximum_unreplied_echo_requests", ECHO_UNANSWERED)

    core = RouterCore(config)
    control, metrics, source, view = _control_room(config, core)
    core.start()
    source.start()

    wake = threading.Event()
    requests: set[str] = set()

    def on_signal(signum, _frame):
        requests.add("reload" if signum == signal.SIGHUP else "stop")
        wake.set()

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, on_signal)

    manager = AppManager.get_instance()
    manager.load_apps(["taprouter.controller.session.app"])
    contexts = manager.create_contexts()
    manager.instantiate_apps(taprouter_core=core, taprouter_tls=tls_context, **contexts)
    gctune.tune()
    LOG.info("listening for switches on %s:%d (%s); routers: %s", config.listen.host, config.listen.port,
             "TLS" if tls_context else "TCP",
             ", ".join(f"{r.name} (dpid {r.dpid:#x})" for r in config.routers))
    while "stop" not in requests:
        wake.wait(1.0)
        wake.clear()
        logcap.cap_all(log_files(core.config))  # the routers a reload added too
        if "reload" in requests:
            requests.discard("reload")
            LOG.info("received SIGHUP, re-reading %s", config.path)
            view.reload(None)  # logs what changed, or why nothing did
    LOG.info("stopping")
    control.stop()
    if metrics is not None:
        metrics.stop()
    source.stop()
    core.stop()
    logging.shutdown()
    # os-ken's native hub cannot stop its server threads; everything that must
    # outlive us (TAPs, their holder, the switch's flows) already does, so leave now.
    os._exit(0)
