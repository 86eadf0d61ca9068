"""Datapath ids as people write them: decimal, 0x and hex digits, or as Open vSwitch prints them."""

from __future__ import annotations

import re

MAX_DPID = (1 << 64) - 1
FORMS = "a decimal integer, 0x and hex digits, or the 16 hex digits `ovs-ofctl show` prints"

_OVS_HEX = re.compile(r"[0-9A-Fa-f]{16}")  # ovs-ofctl show: dpid:0000000000000010
_OVS_COLONS = re.compile(r"[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){7}")  # other-config:datapath-id style
_PREFIXED = re.compile(r"[+-]?0[xXoObB][0-9A-Fa-f_]+")
_DECIMAL = re.compile(r"[+-]?(0|[1-9][0-9_]*)")
_LEADING_ZERO = re.compile(r"[+-]?0[0-9_]+")


class DpidError(ValueError):
    """Not a dpid, or one that could be read two ways; the message, which follows the value,
    says how to write it."""


def parse(text: str) -> int:
    """The dpid that `text`, as written in the file, means. It is read from the text, not as
    YAML 1.1 reads a number, which takes 0000000000000010 for octal and 1:00 for base 60."""
    s = text.strip()
    if _OVS_COLONS.fullmatch(s):
        return int(s.replace(":", ""), 16)
    if _OVS_HEX.fullmatch(s):
        if s.isdigit() and s[0] != "0":
            # Open vSwitch pads its 16 hex digits with zeros; sixteen decimal digits without one
            # could be either.
            raise DpidError("could be decimal or the 16 hex digits Open vSwitch prints: write "
                            f"0x{s} if it is hex")
        return int(s, 16)
    try:
        if _PREFIXED.fullmatch(s):
            return int(s, 0)
        if _DECIMAL.fullmatch(s):
            return int(s)
    except ValueError:
        pass  # misplaced underscores
    if ":" in s:
        raise DpidError("is not a dpid (YAML 1.1 reads digits with colons as base 60): write "
                        "0x and hex digits, or 8 pairs of hex digits such as 00:00:00:00:00:00:00:01")
    if _LEADING_ZERO.fullmatch(s):
        raise DpidError("has a leading zero, which YAML 1.1 reads as octal and Open vSwitch "
                        "as hex: write 0x and hex digits, or decimal without the zero")
    raise DpidError(f"is not a dpid: write {FORMS}")
