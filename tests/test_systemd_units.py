"""The shipped systemd units keep the hitless restart: no RuntimeDirectory= that would wipe the
holder's and BIRD's sockets, no KillMode=none, and commands that exist in the CLI."""

from __future__ import annotations

import configparser
import shlex
from pathlib import Path

import pytest

from taprouter import cli

UNITS = Path(__file__).resolve().parent.parent / "packaging" / "systemd"


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read_string((UNITS / name).read_text())
    return parser


@pytest.mark.parametrize("name", ["taprouter.service", "taprouter-web.service"])
def test_unit_shape(name):
    service = unit(name)["Service"]
    assert "RuntimeDirectory" not in service
    assert service.get("KillMode", "control-group") in ("control-group", "mixed")
    assert service["ExecStart"].startswith("/usr/local/bin/taprouter ")
    assert unit(name)["Install"]["WantedBy"] == "multi-user.target"


def test_daemon_commands_parse():
    service = unit("taprouter.service")["Service"]
    assert service["Environment"] == "TAPROUTER_CONFIG=/etc/taprouter/taprouter.yaml"
    for key in ("ExecStartPre", "ExecStart"):
        argv = shlex.split(service[key])[1:]
        args = cli.parser().parse_args(argv)
        assert args.command in ("check", "run")


def test_documentation_is_the_installed_readme():
    """No invented web address: the unit points at the README the wheel installs (setup.cfg's
    data_files) in the venv the README suggests."""
    docs = unit("taprouter.service")["Unit"]["Documentation"]
    assert docs == "file:/opt/taprouter/share/doc/taprouter/README.md"
    setup = configparser.ConfigParser(interpolation=None)
    setup.read(UNITS.parent.parent / "setup.cfg")
    assert setup["options.data_files"]["share/doc/taprouter"].strip() == "README.md"
    assert "url" not in setup["metadata"] and "project_urls" not in setup["metadata"]
