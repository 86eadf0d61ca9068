"""The command line as a service uses it: --version, help for every command, options after the
subcommand, the default config path, --router on status, down and reload, and exit codes."""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys

import pytest

import taprouter
from taprouter import cli

CONFIG = """routers:
  r1:
    dpid: 1
    netns: trsvcnone1
    ports: {1: {tap: r1-p1, addresses: [10.0.1.1/24]}}
  r2:
    dpid: 2
    netns: trsvcnone2
    ports: {1: {tap: r2-p1}}
"""


@pytest.fixture
def config(tmp_path, monkeypatch):
    monkeypatch.setenv("TAPROUTER_RUN_DIR", str(tmp_path / "run"))
    monkeypatch.delenv("TAPROUTER_CONFIG", raising=False)
    path = tmp_path / "taprouter.yaml"
    path.write_text(CONFIG)
    return path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = cli.main(list(argv))
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def test_version_as_a_process():
    done = subprocess.run([sys.executable, "-m", "taprouter.cli", "--version"], capture_output=True, text=True)
    assert done.returncode == 0
    assert done.stdout == f"taprouter {taprouter.__version__}\n"


def _subparsers(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, sub in action.choices.items():
                yield name, helps.get(name), sub
                yield from _subparsers(sub)


def test_every_subcommand_has_a_description_and_a_help_line():
    seen = list(_subparsers(cli.parser()))
    names = {name for name, _, _ in seen}
    assert {"run", "check", "status", "reload", "bird-config", "down", "policy", "add", "list"} <= names
    for name, help_line, sub in seen:
        assert help_line, f"{name} has no line in its parent's --help"
        assert sub.description, f"{name} --help has no description"


@pytest.mark.parametrize("argv", [["-v", "check"], ["check", "-v"], ["check", "--log-level", "debug"],
                                  ["--log-level", "debug", "check"]])
def test_verbose_before_or_after_the_subcommand(config, capsys, argv):
    code, out, _ = run(capsys, *argv, "-c", str(config))
    assert code == 0, out
    assert logging.getLogger().level == logging.DEBUG


def test_quiet_by_default_even_after_the_subcommand(config, capsys):
    assert run(capsys, "check", "-c", str(config))[0] == 0
    assert logging.getLogger().level == logging.INFO
    assert run(capsys, "-v", "check", "--log-level", "warning", "-c", str(config))[0] == 0
    assert logging.getLogger().level == logging.DEBUG  # -v anywhere wins


def test_config_from_the_environment(config, capsys, monkeypatch):
    monkeypatch.setenv("TAPROUTER_CONFIG", str(config))
    code, out, _ = run(capsys, "check")
    assert (code, out) == (0, f"{config}: OK (2 router(s), 2 port(s))\n")


def test_config_defaults_to_etc(config, capsys):
    code, _, err = run(capsys, "check")
    assert code == 2
    assert err == "error: /etc/taprouter/taprouter.yaml: cannot read: No such file or directory\n"


@pytest.mark.parametrize("command", ["status", "down", "reload"])
def test_router_that_is_not_in_the_file_is_a_usage_error(config, capsys, command):
    code, out, err = run(capsys, command, "-c", str(config), "--router", "r9")
    assert code == 2
    assert err == f"error: no router named 'r9' in {config}\n"


def test_down_with_router_touches_only_that_router(config, capsys):
    code, out, _ = run(capsys, "down", "-c", str(config), "--router", "r2")
    assert code == 0
    assert out.startswith("router r2: removed nothing (already down)")
    assert "r1" not in out


def test_reload_with_router_only_that_router(tmp_path, config, capsys):
    (tmp_path / "bird.conf").write_text("router id 10.0.1.1;\nprotocol device {}\n")
    config.write_text(CONFIG.replace("    ports: {1: {tap: r2-p1}}",
                                     "    ports: {1: {tap: r2-p1}}\n    bird: {config: bird.conf}")
                      .replace("netns: trsvcnone1\n", "netns: trsvcnone1\n    bird: {config: bird.conf}\n"))
    code, _, err = run(capsys, "reload", "-c", str(config), "--router", "r2")
    assert code == 1  # no BIRD runs; what matters is which router it tried
    assert "router r2" in err and "router r1" not in err


def test_status_exits_1_when_no_daemon_runs(config, capsys):
    code, out, _ = run(capsys, "status", "-c", str(config), "--router", "r1")
    assert code == 1
    assert "daemon not running" in out


def test_unknown_option_is_a_usage_error(config, capsys):
    assert run(capsys, "status", "-c", str(config), "--nope")[0] == 2
