"""`taprouter check`: a config's problems on stderr, one per line, and exit 2; OK and 0 otherwise."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from taprouter import cli, config

from test_config import DESIGN_EXAMPLE, compose, good, set_router, set_tap, write


def test_cli_check_bad_file_exits_2_with_each_problem(tmp_path, capsys):
    data = good()
    compose(set_tap(1, "y" * 16), set_router("dpid", "nope"))(data)
    path = write(tmp_path, yaml.safe_dump(data))
    with pytest.raises(config.ConfigError) as expected:
        config.load(path)
    with pytest.raises(SystemExit) as info:
        cli.main(["check", "-c", str(path)])
    assert info.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [f"error: {p}" for p in expected.value.problems]
    assert len(err.splitlines()) == 2
    assert "Traceback" not in err


def test_cli_check_missing_file(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["check", "-c", str(tmp_path / "missing.yaml")])
    assert info.value.code == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'missing.yaml'}: cannot read: No such file or directory\n"


def test_cli_check_good_file(tmp_path, capsys):
    path = write(tmp_path, DESIGN_EXAMPLE.split("    bird:")[0])
    assert cli.main(["check", "-c", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out == f"{path}: OK (1 router(s), 2 port(s))\n"
    assert "error" not in err


def test_cli_check_as_a_process(tmp_path):
    bad = write(tmp_path, "routers:\n  r1:\n    dpid: 0\n    ports: {1: {tap: t1}}\n", "bad.yaml")
    good_path = write(tmp_path, "routers:\n  r1:\n    dpid: 1\n    ports: {1: {tap: t1}}\n", "good.yaml")
    run = [sys.executable, "-m", "taprouter.cli", "check", "-c"]
    result = subprocess.run(run + [str(bad)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert result.stderr == f"error: {bad.resolve()}: routers.r1.dpid: 0 is out of range 1..2^64-1\n"
    result = subprocess.run(run + [str(good_path)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "OK (1 router(s), 1 port(s))" in result.stdout
