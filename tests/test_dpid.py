"""dpids are read as written in the file, in the forms Open vSwitch prints; ambiguous ones are
refused with a hint, never misread as YAML 1.1 reads numbers (octal, base 60)."""

from __future__ import annotations

import pytest

from taprouter import config, dpid
from taprouter.config import ConfigError

from test_config import write


def load_dpid(tmp_path, text: str) -> int:
    path = write(tmp_path, f"routers:\n  r1:\n    dpid: {text}\n    ports: {{1: {{tap: t1}}}}\n")
    return config.load(path).routers[0].dpid


@pytest.mark.parametrize("text,expected", [
    ("0000000000000010", 0x10),  # `ovs-ofctl show`: YAML 1.1 alone reads it as octal, 8
    ('"0000000000000010"', 0x10),
    ("00000a0b0c0d0e0f", 0xA0B0C0D0E0F),
    ("000000000000000A", 0xA),
    ("00:00:00:00:00:00:00:10", 0x10),
    ("00:00:aa:bb:cc:dd:ee:ff", 0xAABBCCDDEEFF),
    ("'00:00:00:00:00:00:00:10'", 0x10),
    ("16", 16), ("0x10", 0x10), ("0X1f", 0x1F), ("1_000", 1000), ("0o17", 15), ("0", None),
    ("18446744073709551615", (1 << 64) - 1), ("ffffffffffffffff", (1 << 64) - 1),
], ids=lambda v: str(v))
def test_dpid_forms_read_as_written(tmp_path, text, expected):
    if expected is None:
        with pytest.raises(ConfigError, match="0 is out of range"):
            load_dpid(tmp_path, text)
    else:
        assert load_dpid(tmp_path, text) == expected


@pytest.mark.parametrize("text,words", [
    ("1:00", ["'1:00' is not a dpid (YAML 1.1 reads digits with colons as base 60)", "0x"]),
    ("'1:00'", ["'1:00' is not a dpid"]),
    ("10:20:30", ["'10:20:30' is not a dpid"]),
    ("010", ["'010' has a leading zero, which YAML 1.1 reads as octal and Open vSwitch as hex",
             "write 0x and hex digits"]),
    ("000000000000010", ["'000000000000010' has a leading zero"]),  # 15 digits: not what OVS prints
    ("1234567890123456", ["'1234567890123456' could be decimal or the 16 hex digits Open vSwitch "
                          "prints: write 0x1234567890123456 if it is hex"]),
    ("1.5", ["'1.5' is not a dpid: write a decimal integer, 0x and hex digits, or the 16 hex digits"]),
    ("true", ["'true' is not a dpid"]),
    ("0x", ["'0x' is not a dpid"]),
    ("1__0", ["'1__0' is not a dpid"]),
    ("~", ["is required: a decimal integer"]),
    ("", ["is required: a decimal integer"]),
    ("[1]", ["must be a decimal integer, 0x and hex digits, or the 16 hex digits `ovs-ofctl show` prints, "
             "not a list"]),
])
def test_ambiguous_or_wrong_dpids_are_refused_with_a_hint(tmp_path, text, words):
    with pytest.raises(ConfigError) as info:
        load_dpid(tmp_path, text)
    [problem] = info.value.problems
    assert ": routers.r1.dpid: " in problem
    for word in words:
        assert word in problem, problem


def test_dpid_parse_agrees_with_what_ovs_prints():
    for value in (1, 0x10, 0xDEADBEEF, (1 << 64) - 1):
        assert dpid.parse(f"{value:016x}") == value
        assert dpid.parse(":".join(f"{value:016x}"[i:i + 2] for i in range(0, 16, 2))) == value
        assert dpid.parse(hex(value)) == value
