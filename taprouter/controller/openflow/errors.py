"""OpenFlow 1.3 error messages in words, and what an error is about.

A switch that refuses a message answers with an error quoting the message's first bytes (at least
64 of them). For a flow_mod that reaches past its cookie; for a group_mod or meter_mod past its id.
So the error names the flow's owner, or the group or meter, without keeping every xid sent.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from os_ken.ofproto import ofproto_v1_3 as ofp

# Each error type's code constants share a prefix (OpenFlow 1.3, section A.4.4).
_CODE_PREFIX = {
    ofp.OFPET_HELLO_FAILED: "OFPHFC_", ofp.OFPET_BAD_REQUEST: "OFPBRC_", ofp.OFPET_BAD_ACTION: "OFPBAC_",
    ofp.OFPET_BAD_INSTRUCTION: "OFPBIC_", ofp.OFPET_BAD_MATCH: "OFPBMC_", ofp.OFPET_FLOW_MOD_FAILED: "OFPFMFC_",
    ofp.OFPET_GROUP_MOD_FAILED: "OFPGMFC_", ofp.OFPET_PORT_MOD_FAILED: "OFPPMFC_",
    ofp.OFPET_TABLE_MOD_FAILED: "OFPTMFC_", ofp.OFPET_QUEUE_OP_FAILED: "OFPQOFC_",
    ofp.OFPET_SWITCH_CONFIG_FAILED: "OFPSCFC_", ofp.OFPET_ROLE_REQUEST_FAILED: "OFPRRFC_",
    ofp.OFPET_METER_MOD_FAILED: "OFPMMFC_", ofp.OFPET_TABLE_FEATURES_FAILED: "OFPTFFC_",
}
_TYPES = {value: name for name, value in vars(ofp).items() if name.startswith("OFPET_") and isinstance(value, int)}
_CODES = {(kind, value): name for kind, prefix in _CODE_PREFIX.items()
          for name, value in vars(ofp).items() if name.startswith(prefix) and isinstance(value, int)}


def describe(kind: int, code: int) -> str:
    """`OFPET_FLOW_MOD_FAILED/OFPFMFC_TABLE_FULL`; numbers where OpenFlow 1.3 has no name."""
    return f"{_TYPES.get(kind, f'type {kind}')}/{_CODES.get((kind, code), f'code {code}')}"


@dataclass(frozen=True)
class Subject:
    """What a refused message was about: a flow (by cookie), a group or a meter (by id)."""

    kind: str  # "flow", "group", "meter"
    value: int


def subject(data: bytes) -> Subject | None:
    """The subject of the message an error quotes; None for any other message, or too little of one."""
    if len(data) < 16:
        return None
    message = data[1]
    if message == ofp.OFPT_FLOW_MOD:
        return Subject("flow", struct.unpack_from("!Q", data, 8)[0])
    if message == ofp.OFPT_GROUP_MOD:  # command (2), type (1), pad (1), group id
        return Subject("group", struct.unpack_from("!I", data, 12)[0])
    if message == ofp.OFPT_METER_MOD:  # command (2), flags (2), meter id
        return Subject("meter", struct.unpack_from("!I", data, 12)[0])
    return None


def is_role_error(kind: int, code: int) -> bool:
    """A role request refused, or a write refused because the connection is a slave (HA): about
    who is master, not about what was written."""
    return kind == ofp.OFPET_ROLE_REQUEST_FAILED or (kind == ofp.OFPET_BAD_REQUEST and code == ofp.OFPBRC_IS_SLAVE)
