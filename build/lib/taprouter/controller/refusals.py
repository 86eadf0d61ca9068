"""Policies the switch refused: which ones, with the switch's words, until they change.

A switch refuses a policy's flow_mod (its table full, a match it cannot do), or the group or
meter the policy needs. Such a policy is marked failed and left out of the passes that follow, so
the others go in and the switch is not sent the same refusal again and again; the read-back that
follows the error removes what of it went in. It is tried again once it changes in the store, is
re-enabled, or a switch connects afresh.
"""

from __future__ import annotations

from typing import Mapping

from ..policy.model import Policy
from .openflow import pipeline
from .openflow.errors import Subject


class Refusals:
    def __init__(self) -> None:
        self._by_policy: dict[int, tuple[Policy, str]] = {}  # policy id -> the policy as refused, why
        self.changes = 0  # moves on each change: what was worked out from the refusals is stale then

    def note(self, subject: Subject | None, error: str, policies: Mapping[int, Policy],
             group_owner: Mapping[int, int], meter_owner: Mapping[int, int]) -> Policy | None:
        """An error about `subject`: the policy it refused, if it was one of ours, now marked."""
        if subject is None:
            return None
        if subject.kind == "flow":
            cookie = subject.value
            ours = pipeline.is_ours(cookie) and pipeline.owner_of(cookie) == pipeline.Owner.POLICY
            policy_id = cookie & 0xFFFFFFFF if ours else None
        else:
            policy_id = (group_owner if subject.kind == "group" else meter_owner).get(subject.value)
        policy = policies.get(policy_id) if policy_id is not None else None
        if policy is not None:
            self._by_policy[policy.id] = (policy, error)
            self.changes += 1
        return policy

    def error(self, policy: Policy) -> str | None:
        """Why the switch refused this policy, as it is now; None if it did not (or it changed since)."""
        found = self._by_policy.get(policy.id)
        return found[1] if found is not None and found[0] == policy else None

    def keep(self, enabled: set[int]) -> None:
        """Forget refusals of policies no longer enabled: re-enabled, they are tried again."""
        kept = {pid: found for pid, found in self._by_policy.items() if pid in enabled}
        if len(kept) != len(self._by_policy):
            self._by_policy = kept
            self.changes += 1

    def clear(self) -> None:
        if self._by_policy:
            self._by_policy = {}
            self.changes += 1

    def snapshot(self) -> dict[int, tuple[Policy, str]]:
        """The refusals as they stand, for a reader in another thread."""
        return dict(self._by_policy)

    def __len__(self) -> int:
        return len(self._by_policy)
