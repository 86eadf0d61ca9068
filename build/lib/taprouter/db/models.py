"""The tables: policies, their runtime status, the generation counter and the audit log.

Only taprouter.policy.store reads and writes them (and the web UI through the same models). Policy
rows hold each field as the text `taprouter policy add` takes, so that plain SQL can write them too,
and every read goes through taprouter.policy.model.parse: a row no flag could have made is shown as
failed, never installed. Columns that plain SQL may leave out have database defaults.
"""

from __future__ import annotations

from django.db import models
from django.db.models.functions import Now

ACTIONS = ("drop", "permit", "forward", "police")
STATES = ("installed", "pending", "disabled", "expired", "failed")
AUDITED = ("add", "set", "enable", "disable", "del", "import")


class Policy(models.Model):
    # 32 bits: the daemon puts the id in the cookie of the policy's flows. Ids are never reused
    # (SQLite AUTOINCREMENT, a PostgreSQL sequence), so a stale status row never names a new policy.
    id = models.AutoField(primary_key=True)
    router = models.CharField(max_length=64)
    name = models.CharField(max_length=64)
    priority = models.IntegerField(default=100, db_default=100)
    in_ports = models.CharField(max_length=200, null=True, blank=True)  # "1,2"
    src = models.CharField(max_length=43, null=True, blank=True)  # a prefix: 10.0.1.0/24, 2001:db8::/32
    dst = models.CharField(max_length=43, null=True, blank=True)
    proto = models.SmallIntegerField(null=True, blank=True)  # the IP protocol number
    sport = models.CharField(max_length=11, null=True, blank=True)  # "22" or "1024-2047"
    dport = models.CharField(max_length=11, null=True, blank=True)
    icmp_type = models.SmallIntegerField(null=True, blank=True)
    action = models.CharField(max_length=8, choices=[(a, a) for a in ACTIONS])
    via = models.CharField(max_length=45, null=True, blank=True)  # FORWARD's next hop
    rate = models.CharField(max_length=24, null=True, blank=True)  # POLICE's: "500pps", "2000kbps"
    to_router = models.BooleanField(default=False, db_default=False)
    enabled = models.BooleanField(default=True, db_default=True)
    idle_timeout = models.IntegerField(null=True, blank=True)
    hard_timeout = models.IntegerField(null=True, blank=True)
    comment = models.TextField(default="", db_default="", blank=True)
    created_at = models.DateTimeField(db_default=Now())
    updated_at = models.DateTimeField(db_default=Now())

    class Meta:
        db_table = "taprouter_policy"
        constraints = [
            models.UniqueConstraint(fields=["router", "name"], name="taprouter_policy_router_name"),
            models.CheckConstraint(condition=models.Q(priority__gte=0, priority__lte=999),
                                   name="taprouter_policy_priority"),
            models.CheckConstraint(condition=models.Q(action__in=ACTIONS), name="taprouter_policy_action"),
        ]
        # A migration that alters this table on SQLite remakes it, which drops its triggers
        # (0002_generation): such a migration must create them again. The generation tests catch it.

    def __str__(self) -> str:
        return f"{self.router}/{self.name}"


class PolicyStatus(models.Model):
    """A policy's runtime state, written by the daemon (and cleared of an expiry by a re-enable).
    Its own table, so that these writes do not bump the generation. No foreign-key constraint: plain
    SQL may delete a policy without deleting its status first; the store drops such leftovers."""

    policy = models.OneToOneField(Policy, on_delete=models.DO_NOTHING, primary_key=True, db_constraint=False,
                                  related_name="status")
    state = models.CharField(max_length=10, choices=[(s, s) for s in STATES])
    error = models.TextField(default="", db_default="", blank=True)
    installed_at = models.DateTimeField(null=True, blank=True)
    expired_at = models.DateTimeField(null=True, blank=True)
    packets = models.BigIntegerField(default=0, db_default=0)
    bytes = models.BigIntegerField(default=0, db_default=0)
    updated_at = models.DateTimeField(db_default=Now())

    class Meta:
        db_table = "taprouter_policy_status"


class PolicyGeneration(models.Model):
    """One row (id 1) whose value database triggers raise on every change to taprouter_policy,
    whoever makes it: the daemon polls this row, not the table."""

    id = models.IntegerField(primary_key=True)
    value = models.BigIntegerField(default=0)

    class Meta:
        db_table = "taprouter_policy_generation"


class AuditEntry(models.Model):
    """Who changed which policy, when, and how: the policy's fields before and after, as JSON."""

    id = models.BigAutoField(primary_key=True)
    at = models.DateTimeField(db_default=Now(), db_index=True)
    who = models.CharField(max_length=150)  # a Unix user (the CLI) or a web user
    router = models.CharField(max_length=64)
    name = models.CharField(max_length=64)
    action = models.CharField(max_length=8, choices=[(a, a) for a in AUDITED])
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)

    class Meta:
        db_table = "taprouter_audit"
        indexes = [models.Index(fields=["router", "name"], name="taprouter_audit_policy")]
