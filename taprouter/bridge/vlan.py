"""802.1Q tags on frames, for the relay: read and stripped on the way to a VLAN's TAP, pushed on the way
out of it. The kernel never sees a tag, so it needs no 802.1Q support."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import Enum

TPID_8021Q = 0x8100
TPID_8021AD = 0x88A8  # a service tag (QinQ's outer one); never routed
TAG_LEN = 4
_TYPE_AT = 12  # the EtherType (or TPID) follows the two MAC addresses
_TAG = struct.Struct("!HH")


class Kind(Enum):
    UNTAGGED = "untagged"
    TAGGED = "tagged"  # one 802.1Q tag
    DOUBLE_TAGGED = "double_tagged"  # an 802.1ad outer tag, or an 802.1Q tag around another tag


@dataclass(frozen=True)
class Tag:
    """What a frame's tag says: its VLAN id and priority (PCP)."""

    vid: int
    pcp: int = 0


def kind(frame: bytes) -> Kind:
    """Too short to hold a tag and its inner type: untagged (the relay's runt check judges it)."""
    if len(frame) < _TYPE_AT + 2:
        return Kind.UNTAGGED
    outer = int.from_bytes(frame[_TYPE_AT:_TYPE_AT + 2], "big")
    if outer == TPID_8021AD:
        return Kind.DOUBLE_TAGGED
    if outer != TPID_8021Q:
        return Kind.UNTAGGED
    inner = int.from_bytes(frame[_TYPE_AT + TAG_LEN:_TYPE_AT + TAG_LEN + 2], "big")
    return Kind.DOUBLE_TAGGED if inner in (TPID_8021Q, TPID_8021AD) else Kind.TAGGED


def strip(frame: bytes) -> tuple[Tag, bytes]:
    """A single-tagged frame's tag, and the frame without it (kind() must have said TAGGED)."""
    _, tci = _TAG.unpack_from(frame, _TYPE_AT)
    return Tag(tci & 0x0FFF, tci >> 13), frame[:_TYPE_AT] + frame[_TYPE_AT + TAG_LEN:]


def push(frame: bytes, vid: int, pcp: int = 0) -> bytes:
    """The frame with an 802.1Q tag for `vid` in front of its EtherType."""
    return frame[:_TYPE_AT] + _TAG.pack(TPID_8021Q, pcp << 13 | vid) + frame[_TYPE_AT:]
