"""Names that become paths or interface names: only plain ones, and text, with a message that says
what YAML read when it read something else."""

from __future__ import annotations

import pytest

from taprouter import cli, config
from taprouter.config import ConfigError
from taprouter.configyaml import key_path

from test_config import write

PORTS = "ports: {1: {tap: t1}}"


def problems_of(path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        config.load(path)
    return [p.split(": ", 1)[1] for p in info.value.problems]


RULE = "use letters, digits, '_', '.' and '-', not starting with '.' or '-', at most"


@pytest.mark.parametrize("name", ["..", ".", "-r1", ".r1", "r/1", "r 1", "n" * 65])
def test_a_router_name_that_is_not_plain_is_refused(tmp_path, name):
    path = write(tmp_path, f"routers:\n  '{name}': {{dpid: 1, {PORTS}}}\n")
    shown = repr(name) if len(name) <= 40 else repr(name[:39] + "…")
    [problem] = problems_of(path)
    assert problem.startswith(f"{key_path('routers', name)}: "), problem
    assert f"{shown} is not a valid router name: {RULE} 64 characters" in problem, problem


@pytest.mark.parametrize("name", ["..", ".", "-n", "a/b", "a\nb"])
def test_a_netns_name_that_is_not_plain_is_refused(tmp_path, name):
    path = write(tmp_path, f"routers:\n  r1: {{dpid: 1, netns: {name!r}, {PORTS}}}\n".replace("'", '"'))
    assert problems_of(path) == [f"routers.r1.netns: {name!r} is not a valid network namespace name: {RULE} 64 "
                                 "characters"]


NOT_PLAIN = f"is not a valid interface name: {RULE} 15 characters"


@pytest.mark.parametrize("tap,why", [
    ("lo", "cannot be a TAP: every netns has its loopback interface by that name"),
    ("sit0", "cannot be a TAP: the kernel makes a tunnel device by that name in every netns"),
    ("all", "cannot be a TAP: Linux refuses it: /proc/sys/net/ipv4/conf/ has an entry by that name"),
    ("default", "cannot be a TAP: Linux refuses it: /proc/sys/net/ipv4/conf/ has an entry by that name"),
    ("-p1", NOT_PLAIN), (".p1", NOT_PLAIN), ("..", NOT_PLAIN), ("p 1", NOT_PLAIN), ("p/1", NOT_PLAIN),
])
def test_a_tap_name_that_cannot_work_is_refused(tmp_path, tap, why):
    path = write(tmp_path, f"routers:\n  r1: {{dpid: 1, ports: {{1: {{tap: '{tap}'}}}}}}\n")
    assert problems_of(path) == [f"routers.r1.ports.1.tap: {tap!r} {why}"]


BOOLEAN = ("must be a name (text), not a boolean: quote it (YAML reads yes, no, on, off, true and false "
           "as booleans)")


@pytest.mark.parametrize("key,problem", [
    ("true", BOOLEAN), ("yes", BOOLEAN), ("Off", BOOLEAN),
    ("1", "must be a name (text), not the number 1: quote it"),
    ("1.5", "must be a name (text), not the number 1.5: quote it"),
    ("2024-01-01", "must be a name (text), not the date 2024-01-01: quote it"),
    ("~", "must be a name (text), not null"),
])
def test_a_router_key_yaml_reads_as_no_text_is_named_as_written(tmp_path, key, problem):
    path = write(tmp_path, f"routers:\n  {key}: {{dpid: 1, {PORTS}}}\n")
    assert problems_of(path) == [f"routers.{key}: {problem}"]


@pytest.mark.parametrize("field,value,problem", [
    ("tap", "yes", BOOLEAN),
    ("tap", "7", "must be a name (text), not the number 7: quote it"),
    ("tap", "[a]", "must be a name (text), not a list"),
    ("netns", "on", BOOLEAN),
    ("netns", "5", "must be a name (text), not the number 5: quote it"),
])
def test_a_name_value_yaml_reads_as_no_text_says_so(tmp_path, field, value, problem):
    port = f"{{tap: {value}}}" if field == "tap" else "{tap: t1}"
    netns = f", netns: {value}" if field == "netns" else ""
    path = write(tmp_path, f"routers:\n  r1: {{dpid: 1{netns}, ports: {{1: {port}}}}}\n")
    key = "routers.r1.ports.1.tap" if field == "tap" else "routers.r1.netns"
    assert problems_of(path) == [f"{key}: {problem}"]


@pytest.mark.parametrize("name", ["edge-1", "r1.a", "R_1", "1r", "_x", "n" * 64])
def test_plain_names_load(tmp_path, name):
    path = write(tmp_path, f"routers:\n  {name}: {{dpid: 1, ports: {{1: {{tap: {name[:15]}}}}}}}\n")
    [router] = config.load(path).routers
    assert (router.name, router.netns, router.ports[0].tap) == (name, name, name[:15])


def test_down_on_a_router_named_dotdot_refuses_the_file_and_removes_nothing(tmp_path, monkeypatch, capsys):
    """The issue's reproduction: with the run directory DIR/sub, `down` on a router named ".."
    removed everything in DIR."""
    (tmp_path / "keep.txt").write_text("precious\n")
    (tmp_path / "sub" / "other").mkdir(parents=True)
    monkeypatch.setenv("TAPROUTER_RUN_DIR", str(tmp_path / "sub"))
    path = write(tmp_path / "sub" / "other", f"routers:\n  '..': {{dpid: 1, netns: tdnx1, {PORTS}}}\n")
    with pytest.raises(SystemExit) as info:
        cli.main(["down", "-c", str(path)])
    assert info.value.code == 2
    assert "routers.'..': '..' is not a valid router name" in capsys.readouterr().err
    assert (tmp_path / "keep.txt").read_text() == "precious\n" and path.exists()
