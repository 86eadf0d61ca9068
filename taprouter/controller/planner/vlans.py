"""Plans what a router with VLANs adds to the ingress table: which tag each TAP's frames carry, and
the drops of frames no TAP takes (an unconfigured VLAN, a second tag), each counted by its cookie.

A router without VLANs gets none of this: its ingress flows match tagged and untagged frames alike,
exactly as before VLANs existed.
"""

from __future__ import annotations

from typing import Iterable

from ..openflow import pipeline
from ..openflow.flows import (ETH_TYPE_QINQ, ETH_TYPE_VLAN, OFPVID_NONE, OFPVID_PRESENT, FieldMatch, Flow, Match,
                              exact)
from ..openflow.pipeline import Owner, Table

# Table 0, above and below the accepting flows (100 and 90): a second tag is dropped whoever the frame
# is for; a known VLAN's frame for someone else is dropped uncounted, an unknown VLAN's counted.
PRIO_DOUBLE_TAGGED = 120
PRIO_KNOWN_VLAN = 60
PRIO_UNKNOWN_VLAN = 50

ANY_TAG = FieldMatch("vlan_vid", OFPVID_PRESENT, OFPVID_PRESENT)


def tag_match(vid: int | None) -> FieldMatch | None:
    """What an ingress flow of a TAP matches on the tag: nothing on a router without VLANs (vid None),
    no tag for a port's untagged TAP (0), else the VLAN's tag."""
    if vid is None:
        return None
    return exact("vlan_vid", OFPVID_NONE if vid == 0 else OFPVID_PRESENT | vid)


def _flow(priority: int, *fields: FieldMatch, cookie: int) -> Flow:
    return pipeline.check(Flow(int(Table.INGRESS), priority, Match.of(*fields), cookie=cookie))


def drop_flows(port: int, vids: Iterable[int]) -> list[Flow]:
    """The ingress drops of one port of a router with VLANs, `vids` the VLANs it carries."""
    in_port = exact("in_port", port)
    double = pipeline.drop_cookie(Owner.DOUBLE_TAGGED, port)
    flows = [_flow(PRIO_DOUBLE_TAGGED, in_port, ANY_TAG, exact("eth_type", inner), cookie=double)
             for inner in (ETH_TYPE_VLAN, ETH_TYPE_QINQ)]
    flows.append(_flow(PRIO_UNKNOWN_VLAN, in_port, ANY_TAG, cookie=pipeline.drop_cookie(Owner.UNKNOWN_VLAN, port)))
    flows.extend(_flow(PRIO_KNOWN_VLAN, in_port, exact("vlan_vid", OFPVID_PRESENT | vid),
                       cookie=pipeline.cookie(Owner.PORT)) for vid in sorted(set(vids)) if vid)
    return flows


def drop_counts(counters: dict[int, tuple[int, int]]) -> dict[tuple[int, str], int]:
    """Flow-stats counters by cookie -> packets dropped per (port, reason)."""
    result: dict[tuple[int, str], int] = {}
    for flow_cookie, (packets, _) in counters.items():
        reason = pipeline.DROP_REASONS.get(pipeline.owner_of(flow_cookie))
        if reason is not None and pipeline.is_ours(flow_cookie):
            key = (flow_cookie & 0xFFFFFFFF, reason)
            result[key] = result.get(key, 0) + packets
    return result
