"""Typed OpenFlow 1.3 groups: indirect for one next hop, select for ECMP."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from .flows import Action


class GroupType(Enum):
    INDIRECT = "indirect"
    SELECT = "select"


@dataclass(frozen=True, order=True)
class Bucket:
    weight: int
    actions: tuple[Action, ...]


@dataclass(frozen=True, order=True)
class GroupSpec:
    type: GroupType
    buckets: tuple[Bucket, ...]
