"""Property tests: any file, generated from the schema or mutated from a valid one, is accepted or
refused with messages that name the file and where, never a traceback, in `check` and `run` alike;
and `down` touches nothing outside its router's run directory, whatever the router's name."""

from __future__ import annotations

import contextlib
import io
import os
import re
import secrets
import tempfile
from pathlib import Path
from unittest import mock

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taprouter import cli, config, down as down_mod
from taprouter.config import ConfigError, RouterConfig

from test_config import DESIGN_EXAMPLE

SETTINGS = settings(max_examples=150, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
MESSAGE_MAX = 400  # characters after the file's path: no message may echo a value in full
WHERE = re.compile(r"(line \d+, column \d+|\(top\)|cannot read|is larger than|\S.*?): \S")

# --- generating files -----------------------------------------------------------------------------

TRICKY = ["..", ".", "lo", "all", "-r", ".r", "r/1", "r1", "r1-p1", "0x1", "0000000000000010", "1:00", "010",
          "00:00:00:00:00:00:00:10", "10.0.1.1/24", "10.0.1.2/24", "10.0.1.0/24", "2001:db8:1::/64",
          "2001:db8:1::1/64", "fe80::1/64", "255.255.255.255/32", "240.0.0.1/8", "::ffff:1.2.3.4/96",
          "127.0.0.1:6653", "[::1]:6653", "yes", "~", "", " ", "é", "x" * 300, "a: b", "*a", "&a", "\t"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2 ** 70), 2 ** 70), st.floats(),
                    st.text(max_size=12), st.sampled_from(TRICKY))
keys = st.one_of(st.booleans(), st.integers(-3, 2 ** 33), st.text(max_size=8), st.sampled_from(TRICKY))
junk = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
                    max_leaves=8)
names = st.one_of(st.sampled_from(TRICKY), st.from_regex(r"[a-z][a-z0-9-]{0,14}", fullmatch=True), scalars)


def optional(required: dict, extra: dict) -> st.SearchStrategy:
    return st.fixed_dictionaries(required, optional=extra)


ports = st.dictionaries(st.one_of(st.integers(-1, 6), st.sampled_from(["1", "01", "x", 2 ** 32])),
                        st.one_of(optional({}, {"tap": names, "addresses": st.lists(scalars, max_size=4),
                                                "mtu": junk}), junk),
                        max_size=3)
routers = st.dictionaries(names, st.one_of(
    optional({}, {"dpid": st.one_of(scalars, st.integers(0, 2 ** 64)), "netns": names, "ports": ports,
                  "bird": st.one_of(junk, optional({}, {"config": st.sampled_from(["no/such.conf", ".", "/"])}))}),
    junk), max_size=3)
openflow = st.one_of(junk, optional({}, {"listen": scalars, "tls": st.one_of(junk, optional({}, {
    "key": st.sampled_from(["k.pem", ".", "/dev/null"]), "cert": scalars, "ca": scalars}))}))
documents = st.one_of(junk, optional({}, {"openflow": openflow, "routers": routers, "extra": junk}))


VALID = [
    DESIGN_EXAMPLE.split("    bird:")[0],
    "openflow: {listen: '0.0.0.0:6653'}\nrouters:\n"
    "  edge-1:\n    dpid: 0000000000000010\n    ports:\n      1: &port {tap: e-p1, addresses: [10.0.1.1/24]}\n"
    "      2: {tap: e-p2, addresses: ['2001:db8:2::1/64', fe80::1/64]}\n      4: {<<: *port, tap: e-p4, addresses: []}\n"
    "  edge-2: {dpid: 0x20, netns: ns2, ports: {3: {tap: e2-p3}}}\n",
]
PIECES = ["..", "&a ", "*a", "<<: ", "[", "]", "{", "}", ": ", "- ", "!!binary ", "!!python/object:os.system ",
          "0000000000000010", "1:00", "true", "~", "'", '"', "\t", "\x00", "? ", "|", "#", "---\n", "\n  ",
          "1", "lo", "2001:db8:1::/64", "10.0.2.7/24", "x" * 200]


@st.composite
def mutated(draw) -> bytes:
    """A valid file with a few lines or tokens changed, duplicated, moved or broken."""
    lines = draw(st.sampled_from(VALID)).encode().split(b"\n")
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["piece", "dup", "del", "swap", "indent", "bytes"]))
        if op == "piece":
            at = draw(st.integers(0, len(lines[i])))
            piece = draw(st.sampled_from(PIECES)).encode()
            lines[i] = lines[i][:at] + piece + lines[i][at + draw(st.integers(0, 3)):]
        elif op == "dup":
            lines.insert(draw(st.integers(0, len(lines))), lines[i])
        elif op == "del" and len(lines) > 1:
            del lines[i]
        elif op == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "indent":
            lines[i] = b" " * draw(st.integers(0, 8)) + lines[i].lstrip()
        else:
            at = draw(st.integers(0, len(lines[i])))
            lines[i] = lines[i][:at] + draw(st.binary(min_size=1, max_size=3)) + lines[i][at:]
    return b"\n".join(lines)


def dumped(data) -> bytes:
    try:
        return yaml.safe_dump(data, allow_unicode=True).encode()
    except (yaml.YAMLError, TypeError, ValueError):
        return b"routers: {}\n"  # a structure YAML cannot write; the schema is covered by the rest


# --- what every file must get ---------------------------------------------------------------------

def assert_named(problem: str, path: Path) -> None:
    """FILE: WHERE: WHAT, short."""
    prefix = next((f"{p}: " for p in (path.resolve(), path) if problem.startswith(f"{p}: ")), None)
    assert prefix, problem
    rest = problem[len(prefix):]
    assert len(rest) < MESSAGE_MAX, problem
    assert WHERE.match(rest), problem


def assert_handled(text: bytes) -> None:
    with tempfile.TemporaryDirectory(prefix="tdnprop") as tmp:
        path = Path(tmp) / "taprouter.yaml"
        path.write_bytes(text)
        try:
            loaded = config.load(path)
        except ConfigError as exc:
            assert exc.problems
            for problem in exc.problems:
                assert_named(problem, path)
            loaded = None
        else:
            for warning in loaded.warnings:
                assert_named(warning, path)
        for command in (["check"], ["run"]):
            assert_command(command, path, loaded)


def assert_command(command: list[str], path: Path, loaded) -> None:
    """`check` and `run` (up to where it starts the daemon) print the same problems and exit 2,
    or accept the file; no traceback."""
    started = []
    err = io.StringIO()
    with mock.patch("taprouter.daemon.run", lambda c: started.append(c) or 0), \
            mock.patch("taprouter.routing.bird.validate", lambda p: None), \
            contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            status = cli.main(command + ["-c", str(path)])
        except SystemExit as exc:
            status = exc.code
    lines = err.getvalue().splitlines()
    if loaded is None:
        assert status == 2 and lines and all(line.startswith("error: ") for line in lines), lines
        for line in lines:
            assert_named(line.removeprefix("error: "), path)
    elif command == ["run"]:
        assert status == 0 and started == [loaded]
    else:
        assert status in (0, 2), lines  # 2: a TLS file that cannot be used
        assert all(line.startswith(("error: ", "warning: ")) for line in lines), lines


@SETTINGS
@given(documents)
def test_any_file_from_the_schema_is_accepted_or_refused_by_name(data):
    assert_handled(dumped(data))


@SETTINGS
@given(mutated())
def test_any_mutation_of_a_valid_file_is_accepted_or_refused_by_name(text):
    assert_handled(text)


def test_the_mutated_files_start_valid(tmp_path):
    for i, text in enumerate(VALID):
        (tmp_path / f"{i}.yaml").write_text(text)
        assert config.load(tmp_path / f"{i}.yaml").routers


def test_run_refuses_a_bad_file_with_the_message_check_gives(tmp_path):
    import subprocess
    import sys
    path = tmp_path / "bad.yaml"
    path.write_text("routers:\n  '..': {dpid: 1:00, ports: {1: {tap: lo}}}\n")
    results = [subprocess.run([sys.executable, "-m", "taprouter.cli", command, "-c", str(path)],
                              capture_output=True, text=True, timeout=60) for command in ("check", "run")]
    assert [r.returncode for r in results] == [2, 2]
    assert results[0].stderr == results[1].stderr == (
        f"error: {path}: routers.'..': '..' is not a valid router name: use letters, digits, '_', '.' and '-', "
        "not starting with '.' or '-', at most 64 characters\n")


# --- down, whatever the names ---------------------------------------------------------------------

def snapshot(root: Path, skip: Path | None = None) -> dict[str, tuple]:
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            if skip is not None and (p == skip or skip in p.parents):
                continue
            found[str(p.relative_to(root))] = (p.is_symlink(), p.is_dir(), None if p.is_dir() or p.is_symlink()
                                               else p.read_bytes())
    return found


SIBLING = "sibling-router-dir"  # longer than any generated name that could equal it
router_names = st.one_of(st.sampled_from(["..", ".", "../..", "run", "r1", "r1/..", "/", "/tmp", "", "-r",
                                          "r\n", "x" * 65, f"../{SIBLING}", "..\x00"]),
                         st.text(max_size=12), st.from_regex(r"[a-z0-9_][a-z0-9_.-]{0,10}", fullmatch=True))
KNOWN = [p.name for p in down_mod.run_files(Path("/"))]


@SETTINGS
@given(name=router_names, ours=st.lists(st.sampled_from(KNOWN), unique=True), foreign=st.booleans(),
       symlink=st.booleans())
def test_down_touches_nothing_outside_the_routers_own_run_files(name, ours, foreign, symlink):
    with tempfile.TemporaryDirectory(prefix="tdnprop") as tmp:
        base = Path(tmp)
        (base / "outside").mkdir()
        (base / "outside" / "keep").write_text("outside the run root\n")
        root = base / "run"
        (root / SIBLING).mkdir(parents=True)
        (root / SIBLING / "status.json").write_text("another router's\n")
        plain = config.paths.is_plain(name)
        run_dir = root / name if plain else None
        if plain:
            if symlink:
                run_dir.symlink_to(base / "outside")
            else:
                run_dir.mkdir()
                for file in ours:
                    (run_dir / file).write_text("taprouter's\n")
                if foreign:
                    (run_dir / "notes").write_text("the operator's\n")
        mine = run_dir if plain and not symlink else None
        before = snapshot(base, skip=mine)
        with mock.patch.dict(os.environ, {"TAPROUTER_RUN_DIR": str(root)}):
            down_mod.down(RouterConfig(name, 1, f"tdn{secrets.token_hex(4)}", (), None))
        assert snapshot(base, skip=mine) == before
        if mine is not None:
            assert sorted(p.name for p in mine.iterdir()) == ["notes"] if foreign else not mine.exists()
