"""Reading the file: duplicate keys, hostile files (deep, aliased, huge), bytes that are not UTF-8,
and values never echoed in full."""

from __future__ import annotations

import resource
import time

import pytest

from taprouter import config, configyaml
from taprouter.config import ConfigError

from test_config import write

HEAD = "routers:\n  r1:\n    dpid: 1\n"


def problems_of(path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        config.load(path)
    return info.value.problems


# --- duplicate keys -------------------------------------------------------------------------------

@pytest.mark.parametrize("text,key,lines", [
    ("routers:\n  r1:\n    dpid: 1\n    ports: {1: {tap: a}}\n  r1:\n    dpid: 2\n    ports: {1: {tap: b}}\n",
     "routers.r1", (2, 5)),
    (HEAD + "    ports:\n      1: {tap: a}\n      2: {tap: b}\n      1: {tap: c}\n", "routers.r1.ports.1", (5, 7)),
    (HEAD + "    ports:\n      1: {tap: a}\n      \"1\": {tap: b}\n", "routers.r1.ports.1", (5, 6)),
    (HEAD + "    ports:\n      0x2: {tap: a}\n      2: {tap: b}\n", "routers.r1.ports.2", (5, 6)),
    (HEAD + "    ports: {1: {tap: a, tap: b}}\n", "routers.r1.ports.1.tap", (4, 4)),
    (HEAD + "    dpid: 2\n    ports: {1: {tap: a}}\n", "routers.r1.dpid", (3, 4)),
    ("openflow: {}\n" + HEAD + "    ports: {1: {tap: a}}\nopenflow: {listen: '0.0.0.0:1'}\n", "openflow", (1, 6)),
], ids=["router", "port", "port-1-and-quoted-1", "port-hex-and-decimal", "tap", "dpid", "top"])
def test_a_duplicate_key_is_refused_naming_both_lines(tmp_path, text, key, lines):
    path = write(tmp_path, text)
    assert problems_of(path) == [f"{path.resolve()}: {key}: duplicate key, on lines {lines[0]} and {lines[1]}: "
                                 "YAML would keep only the second; keep one"]


def test_the_same_name_in_different_mappings_is_no_duplicate(tmp_path):
    path = write(tmp_path, "routers:\n  r1: {dpid: 1, ports: {1: {tap: a}}}\n  r2: {dpid: 2, ports: {1: {tap: a}}}\n")
    assert [r.name for r in config.load(path).routers] == ["r1", "r2"]


def test_router_names_01_and_1_are_two_routers(tmp_path):
    # Only port numbers are compared as numbers; "01" and "1" are two directory names.
    path = write(tmp_path, 'routers:\n  "01": {dpid: 1, ports: {1: {tap: a}}}\n  "1": {dpid: 2, ports: {1: {tap: b}}}\n')
    assert [r.name for r in config.load(path).routers] == ["01", "1"]


def test_merge_keys_work_and_keys_written_win(tmp_path):
    path = write(tmp_path, "base: &base {tap: shared, addresses: [10.0.1.1/24]}\n"
                           "routers:\n  r1:\n    dpid: 1\n    ports:\n"
                           "      1: {<<: *base}\n      2: {<<: *base, tap: own, addresses: []}\n")
    # "base" is an unknown top-level key; the merged ports are what matter here.
    problems = problems_of(path)
    assert [p.split(": ", 2)[1] for p in problems] == ["base"], problems
    text = path.read_text().replace("base: &base", "x-base: &base")
    data = configyaml.read(write(tmp_path, text)).data
    assert data["routers"]["r1"]["ports"] == {1: {"tap": "shared", "addresses": ["10.0.1.1/24"]},
                                             2: {"tap": "own", "addresses": []}}


# --- hostile files --------------------------------------------------------------------------------

def timed_problems(path) -> tuple[list[str], float, int]:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    problems = problems_of(path)
    return problems, time.monotonic() - started, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before


def test_deep_nesting_is_a_clear_error_not_a_recursion_error(tmp_path):
    path = write(tmp_path, "routers: " + "[" * 6000 + "]" * 6000 + "\n")
    problems, seconds, _ = timed_problems(path)
    # Where it is noticed depends on how far the parser reads ahead (libyaml: 1000 levels).
    [problem] = problems
    assert problem.startswith(f"{path}: line 1, column "), problem
    assert problem.endswith(f": nested more than {configyaml.MAX_DEPTH} levels deep; a taprouter config "
                            "nests 6"), problem
    assert seconds < 5


def test_nesting_just_past_the_bound_is_noticed_where_it_starts(tmp_path):
    depth = configyaml.MAX_DEPTH
    path = write(tmp_path, "routers: " + "[" * (depth - 1) + "]" * (depth - 1) + "\n")
    assert problems_of(path) == [f"{path.resolve()}: routers: is required: a mapping of router name to its "
                                 "settings"]
    path = write(tmp_path, "routers: " + "[" * depth + "]" * depth + "\n")
    assert problems_of(path) == [f"{path}: line 1, column {9 + depth}: nested more than {depth} levels "
                                 "deep; a taprouter config nests 6"]


def test_nesting_through_aliases_is_bounded_too(tmp_path):
    # Each line nests 30 levels, and an alias carries the line before into it: 90 levels in all.
    lines = [f"a0: &a0 {'[' * 30}1{']' * 30}"]
    lines += [f"a{i}: &a{i} {'[' * 30}*a{i - 1}{']' * 30}" for i in range(1, 3)]
    path = write(tmp_path, "\n".join(lines) + "\nrouters: *a2\n")
    [problem] = problems_of(path)
    assert "nested more than 32 levels deep through aliases" in problem, problem


def test_a_recursive_merge_is_refused(tmp_path):
    path = write(tmp_path, "routers: &r\n  <<: *r\n")
    [problem] = problems_of(path)
    assert "nested more than 32 levels deep" in problem, problem


def alias_bomb(levels: int = 9) -> str:
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    for previous, name in zip("abcdefghij", "bcdefghij"[:levels - 1]):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{previous}"] * 9) + "]")
    last = "abcdefghij"[levels - 1]
    return "\n".join(lines) + f"\nrouters:\n  r1:\n    dpid: 1\n    ports: {{1: {{tap: t1, addresses: *{last}}}}}\n"


def test_an_alias_bomb_is_refused_quickly_with_a_short_message(tmp_path):
    text = alias_bomb()
    assert len(text) < 400
    path = write(tmp_path, text)
    problems, seconds, grown_kb = timed_problems(path)
    # Where the budget ran out: inside the list repeated most.
    assert problems == [f"{path}: line 1, column 16: more than {configyaml.MAX_VALUES} values, counting each "
                        "use of an alias; a taprouter config has a few hundred"]
    assert seconds < 5 and grown_kb < 100_000, (seconds, grown_kb)


def test_a_small_alias_bomb_under_the_budget_prints_short_messages(tmp_path):
    # 9^4 values fit the budget; each one is refused, but no message repeats a nested value.
    path = write(tmp_path, alias_bomb(4))
    problems = [p for p in problems_of(path) if ".addresses" in p]
    assert len(problems) == 9 and all(len(p) < len(str(path)) + 120 for p in problems), problems[:2]
    assert problems[0].endswith("routers.r1.ports.1.addresses[0]: a list is not a CIDR address such as "
                                "10.0.1.1/24")


@pytest.mark.parametrize("size", [configyaml.MAX_BYTES + 1, 10 * configyaml.MAX_BYTES])
def test_a_file_larger_than_the_bound_is_refused_before_it_is_read(tmp_path, size):
    path = write(tmp_path, HEAD + "    ports: {1: {tap: a}}\n#" + "x" * (size - len(HEAD) - 26) + "\n")
    assert path.stat().st_size >= size
    problems, seconds, grown_kb = timed_problems(path)
    assert problems == [f"{path}: is larger than 1024 KiB, the most taprouter reads: a config file is a few KB"]
    assert seconds < 1 and grown_kb < 5_000, (seconds, grown_kb)


def test_a_file_at_the_bound_is_read(tmp_path):
    body = HEAD + "    ports: {1: {tap: a}}\n"
    path = write(tmp_path, body + "#" + "x" * (configyaml.MAX_BYTES - len(body) - 2) + "\n")
    assert path.stat().st_size == configyaml.MAX_BYTES
    assert config.load(path).routers[0].name == "r1"


def test_a_long_value_is_never_echoed_in_full(tmp_path):
    long = "x" * 100_000
    path = write(tmp_path, f"routers:\n  r1:\n    dpid: '{long}'\n    netns: '{long}'\n"
                           f"    ports: {{1: {{tap: '{long}', addresses: ['{long}/24', '{long}']}}}}\n"
                           f"  ? '{long}'\n  : {{}}\n? {long}\n: 1\nopenflow: {{listen: '{long}'}}\n")
    problems = problems_of(path)
    assert len(problems) == 8, problems
    for problem in problems:
        assert len(problem) < len(str(path.resolve())) + 300, problem
        assert "x" * 41 not in problem and "xxx…" in problem, problem


@pytest.mark.parametrize("text,where", [
    (b"routers:\n  r1:\n    dpid: 1\n    netns: caf\xe9\n", "line 4, column 15: byte 0xe9"),
    (b"\xff\xfe\x00\x01garbage", "line 1, column 1: byte 0xff"),
    ("routers:\n  r\u00e9:\n".encode() + b"    \x80\n", "line 3, column 5: byte 0x80"),
], ids=["latin-1", "binary", "after-utf8"])
def test_bytes_that_are_not_utf8_are_reported_with_line_and_column(tmp_path, text, where):
    path = write(tmp_path, text)
    assert problems_of(path) == [f"{path}: {where} is not UTF-8 text"]


def test_an_unknown_tag_is_a_config_error(tmp_path):
    path = write(tmp_path, HEAD + "    ports: !!python/object:os.system {1: {tap: a}}\n")
    [problem] = problems_of(path)
    assert problem == (f"{path}: line 4, column 12: the tag tag:yaml.org,2002:python/object:os.syst… is not "
                       "supported here, where a mapping is")


def test_a_list_as_a_key_is_a_config_error(tmp_path):
    path = write(tmp_path, HEAD + "    ports:\n      ? [1, 2]\n      : {tap: a}\n")
    assert problems_of(path) == [f"{path}: line 5, column 9: routers.r1.ports: a key must be text or a number, "
                                 "not a list or a mapping"]


def test_two_documents_are_a_config_error(tmp_path):
    path = write(tmp_path, HEAD + "    ports: {1: {tap: a}}\n---\nrouters: {}\n")
    assert problems_of(path) == [f"{path}: line 5, column 1: expected a single document in the stream "
                                 "(line 1, column 1): but found another document"]


def test_a_file_of_too_many_values_is_refused_before_they_are_composed(tmp_path):
    path = write(tmp_path, "x: [" + "1," * configyaml.MAX_VALUES + "1]\n")
    problems, seconds, grown_kb = timed_problems(path)
    # The value past the budget: the mapping, the key x and the list count as the first three.
    column = 5 + 2 * (configyaml.MAX_VALUES - 3)
    assert problems == [f"{path}: line 1, column {column}: more than {configyaml.MAX_VALUES} values, counting "
                        "each use of an alias; a taprouter config has a few hundred"]
    assert grown_kb < 50_000, grown_kb
