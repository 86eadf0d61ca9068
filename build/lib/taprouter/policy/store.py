"""The policy store: the only code that reads and writes the policy tables, in terms of model.Policy.

Every write is one transaction that also writes an audit entry; writers queue behind one another
(SQLite's IMMEDIATE transactions, a row lock on the generation in PostgreSQL), so the checks a
write makes still hold when it commits. Rows are read through model.parse, so a row that plain SQL
made wrong is reported (`invalid`) rather than handed to the daemon.

For the daemon: read `generation()` before `policies()`; when the generation has not moved since,
nothing in the policy table has either. Status writes (`write_statuses`, `mark_expired`) do not move
it. After each write, `last_write` holds the generation before and after it: nothing else moved it
in between, so a daemon told of the write's policies and of that pair knows the move is explained.
"""

from __future__ import annotations

import os
import pwd
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from django.db import DatabaseError, IntegrityError, connections, transaction
from django.utils import timezone

from ..config import Config
from ..configyaml import Index, key_path
from ..db.setup import DatabaseProblem, configure
from . import checks, document
from .model import Policy, PolicyError, State, Status, parse

COLUMNS = ("id", "router", "name", "priority", "in_ports", "src", "dst", "proto", "sport", "dport", "icmp_type",
           "action", "via", "rate", "to_router", "enabled", "idle_timeout", "hard_timeout", "comment")
# Columns named differently from model.FIELDS.
_FIELD_OF = {"in_ports": "in_port"}
BATCH = 500  # rows a statement takes: SQLite caps a statement's parameters
_STATUS_COLUMNS = ("policy_id", "state", "error", "installed_at", "expired_at", "packets", "bytes")

# What callers catch: the database cannot be opened or migrated, or a query failed (a server gone,
# a lock held too long).
__all__ = ["DatabaseError", "DatabaseProblem", "Invalid", "Outcome", "Store", "effective"]


@dataclass(frozen=True)
class Invalid:
    """A row model.parse refuses (written by plain SQL): shown as failed, never installed."""

    id: int
    router: str
    name: str
    fields: dict[str, Any]  # as stored, None left out
    error: PolicyError


@dataclass(frozen=True)
class Outcome:
    """A write's result: the policy as it now is, and whether anything changed (and was audited)."""

    policy: Policy
    changed: bool


def effective(policy: Policy, status: Status | None) -> Status:
    """The state to show: a disabled policy is disabled whatever the daemon last wrote; an enabled
    one the daemon has not written (or wrote as disabled) is pending."""
    policy_id = policy.id if policy.id is not None else 0
    if not policy.enabled:
        return Status(policy_id, State.DISABLED, packets=status.packets if status else 0,
                      bytes=status.bytes if status else 0)
    if status is None or status.state is State.DISABLED:
        return Status(policy_id, State.PENDING)
    return status


def unix_user() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return f"uid {os.getuid()}"


def _fields_of(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row's values as model.parse's fields (None and '' left out: unset)."""
    return {_FIELD_OF.get(c, c): row[c] for c in COLUMNS[3:] if row[c] is not None and row[c] != ""}


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _row_of(policy: Policy) -> dict[str, Any]:
    """The columns (but id) of a policy's row, each field as the text `policy add` takes."""
    m = policy.match
    return {"router": policy.router, "name": policy.name, "priority": policy.priority,
            "in_ports": ",".join(map(str, m.in_ports)) or None, "src": _text(m.src), "dst": _text(m.dst),
            "proto": m.proto, "sport": _text(m.sport), "dport": _text(m.dport), "icmp_type": m.icmp_type,
            "action": policy.action.value, "via": _text(policy.via), "rate": _text(policy.rate),
            "to_router": policy.to_router, "enabled": policy.enabled, "idle_timeout": policy.idle_timeout,
            "hard_timeout": policy.hard_timeout, "comment": policy.comment}


def _parsed(row: Mapping[str, Any]) -> Policy | Invalid:
    try:
        return replace(parse(row["router"], row["name"], _fields_of(row)), id=row["id"])
    except PolicyError as exc:
        return Invalid(row["id"], row["router"], row["name"], _fields_of(row), exc)


def _audited(router: str, name: str, fields: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if fields is None else {"router": router, "name": name, **fields}


class Store:
    def __init__(self, alias: str, routers: checks.Routers, source: object = "the config file",
                 user: str | None = None):
        from ..db import models  # Django's models exist once configure() has run

        self.alias = alias
        self.routers = routers
        self.source = source  # where the routers come from, for messages
        self.user = user or unix_user()
        self._m = models
        self.last_write: tuple[int, int] | None = None  # the generation before and after the last write
        # Each row as last read (its columns' values) -> what it parsed to. A row read again
        # unchanged is not parsed again (parsing is nine tenths of reading 10,000 policies), and
        # gives the very same Policy, which the planner then tells unchanged by identity.
        self._parsed: dict[tuple, Policy | Invalid] = {}

    @classmethod
    def open(cls, config: Config, user: str | None = None) -> "Store":
        """The store of the config's database, migrated on first use; DatabaseProblem if it cannot be."""
        return cls(configure(config.database), {r.name: r for r in config.routers}, config.path, user)

    # --- reading ---------------------------------------------------------------------------------

    def _fresh(self) -> None:
        """Before an operation, outside a transaction: replace a connection that failed, or (with
        PostgreSQL's health checks) one the server dropped, so a daemon outlives a database
        restart. Inside a transaction this would close it: Django reads its autocommit as stale."""
        connection = connections[self.alias]
        if not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()

    def _rows(self, **where: Any) -> Iterator[tuple]:
        """Rows as tuples of COLUMNS' values."""
        self._fresh()
        rows = self._m.Policy.objects.using(self.alias).filter(**where).order_by("router", "-priority", "name")
        return rows.values_list(*COLUMNS).iterator(chunk_size=2000)

    def _read(self, **where: Any) -> tuple[list[Policy], list[Invalid]]:
        good, bad = [], []
        known, seen = self._parsed, {}
        for values in self._rows(**where):
            item = known.get(values)
            if item is None:
                item = _parsed(dict(zip(COLUMNS, values)))
            seen[values] = item
            (good if isinstance(item, Policy) else bad).append(item)
        if where:
            known.update(seen)
        else:
            self._parsed = seen  # every row: what is not among them is gone
        return good, bad

    def policies(self, router: str | None = None) -> list[Policy]:
        """The valid policies, of one router or all, by router, then highest priority, then name."""
        return self._read(**({} if router is None else {"router": router}))[0]

    def named(self, router: str, names: Iterable[str]) -> list[Policy]:
        """The valid policies of a router with these names (the others are not read)."""
        names = sorted(set(names))
        found: list[Policy] = []
        for start in range(0, len(names), BATCH):
            found += self._read(router=router, name__in=names[start:start + BATCH])[0]
        return found

    def invalid(self, router: str | None = None) -> list[Invalid]:
        return self._read(**({} if router is None else {"router": router}))[1]

    def by_ids(self, ids: Iterable[int]) -> dict[int, Policy]:
        found: dict[int, Policy] = {}
        ids = list(ids)
        for start in range(0, len(ids), BATCH):
            found.update((p.id, p) for p in self._read(id__in=ids[start:start + BATCH])[0])
        return found

    def get(self, router: str, name: str) -> Policy:
        row = self._row(router, name)
        try:
            return replace(parse(router, name, _fields_of(row)), id=row["id"])
        except PolicyError as exc:
            raise PolicyError(exc.field, f"the stored policy {name!r} is invalid: {exc.message} (plain SQL "
                                         "wrote it; fix it with policy set, or delete it)") from None

    def _row(self, router: str, name: str) -> dict[str, Any]:
        self._fresh()
        row = self._m.Policy.objects.using(self.alias).filter(router=router, name=name).values(*COLUMNS).first()
        if row is None:
            raise PolicyError("name", f"router {router} has no policy {name!r}")
        return row

    def generation(self) -> int:
        """The policy table's change counter: any insert, update or delete moves it."""
        self._fresh()
        return self._m.PolicyGeneration.objects.using(self.alias).values_list("value", flat=True).get(id=1)

    def statuses(self, ids: Iterable[int] | None = None) -> dict[int, Status]:
        """What the daemon last wrote, by policy id (of the ids given, or all)."""
        self._fresh()
        table = self._m.PolicyStatus.objects.using(self.alias)
        if ids is None:
            batches = [table.all()]
        else:
            ids = list(ids)
            batches = [table.filter(policy_id__in=ids[start:start + BATCH]) for start in range(0, len(ids), BATCH)]
        found: dict[int, Status] = {}
        for rows in batches:
            for r in rows.values_list(*_STATUS_COLUMNS):
                found[r[0]] = Status(r[0], State(r[1]), *r[2:])
        return found

    # --- writing ---------------------------------------------------------------------------------

    @contextmanager
    def _writing(self) -> Iterator[datetime]:
        """One transaction, writers one at a time; yields its time. Sets last_write once it commits."""
        self._fresh()
        self.last_write = None
        row = self._m.PolicyGeneration.objects.using(self.alias).filter(id=1)
        with transaction.atomic(using=self.alias):
            # PostgreSQL: hold the generation row, which every writer (and every trigger) updates,
            # so no other change moves it until this one commits. SQLite ignores this; its
            # IMMEDIATE transaction took the write lock at BEGIN.
            before = row.select_for_update().values_list("value", flat=True).get()
            yield timezone.now()
            moved = (before, row.values_list("value", flat=True).get())
        self.last_write = moved

    def _audit(self, at: datetime, action: str, entries: Iterable[tuple[str, str, Any, Any]]) -> None:
        self._m.AuditEntry.objects.using(self.alias).bulk_create(
            [self._m.AuditEntry(at=at, who=self.user, router=r, name=n, action=action, before=b, after=a)
             for r, n, b, a in entries], batch_size=BATCH)

    @staticmethod
    def _json(policy: Policy) -> dict[str, Any]:
        return _audited(policy.router, policy.name, document.fields(policy))

    def _router(self, name: str):
        return checks.router(self.routers, name, self.source)

    def _same_priority(self, router: str, priority: int) -> list[Policy]:
        return self._read(router=router, priority=priority)[0]

    def add(self, policy: Policy) -> Policy:
        config = self._router(policy.router)
        with self._writing() as now:
            taken = PolicyError("name", f"{policy.name!r} is already a policy of router {policy.router}")
            if self._m.Policy.objects.using(self.alias).filter(router=policy.router, name=policy.name).exists():
                raise taken
            checks.check(policy, config, self._same_priority(policy.router, policy.priority))
            try:
                with transaction.atomic(using=self.alias):
                    row = self._m.Policy.objects.using(self.alias).create(**_row_of(policy), created_at=now,
                                                                          updated_at=now)
            except IntegrityError:  # plain SQL added the name since the check above
                raise taken from None
            added = replace(policy, id=row.id)
            self._audit(now, "add", [(policy.router, policy.name, None, self._json(added))])
        return added

    def update(self, router: str, name: str, changes: Mapping[str, Any]) -> Outcome:
        """Change some fields (as model.parse takes them; None or '' unsets one). Changing the action
        drops the next hop or rate that the new action does not take, unless given too."""
        config = self._router(router)
        with self._writing() as now:
            row = self._row(router, name)
            fields = _fields_of(row)
            action = str(changes.get("action") or "").lower()
            for argument, taker in (("via", "forward"), ("rate", "police")):
                if action and action != taker and argument not in changes:
                    fields.pop(argument, None)
            fields.update(changes)
            policy = replace(parse(router, name, {k: v for k, v in fields.items() if v not in (None, "")}),
                             id=row["id"])
            try:
                old = parse(router, name, _fields_of(row))
            except PolicyError:  # a row plain SQL made invalid: this update repairs it
                before = _audited(router, name, _fields_of(row))
            else:
                if document.same(old, policy):
                    return Outcome(policy, False)
                before = self._json(old)
            checks.check(policy, config, self._same_priority(router, policy.priority))
            self._m.Policy.objects.using(self.alias).filter(id=row["id"]).update(**_row_of(policy), updated_at=now)
            self._audit(now, "set", [(router, name, before, self._json(policy))])
        return Outcome(policy, True)

    def enable(self, router: str, name: str) -> Outcome:
        """Enable a policy; an expired one is cleared of its expiry and goes back on the switch."""
        return self._turn(router, name, True)

    def disable(self, router: str, name: str) -> Outcome:
        return self._turn(router, name, False)

    def _turn(self, router: str, name: str, enabled: bool) -> Outcome:
        with self._writing() as now:
            policy = self.get(router, name)
            status = self.statuses([policy.id]).get(policy.id)
            expired = enabled and status is not None and status.state is State.EXPIRED
            if policy.enabled == enabled and not expired:
                return Outcome(policy, False)
            if expired:
                self._m.PolicyStatus.objects.using(self.alias).filter(policy_id=policy.id).update(
                    state=State.PENDING.value, expired_at=None, error="", updated_at=now)
            # Written even when only the expiry changed: the daemon learns of it by the generation.
            self._m.Policy.objects.using(self.alias).filter(id=policy.id).update(enabled=enabled, updated_at=now)
            after = replace(policy, enabled=enabled)
            self._audit(now, "enable" if enabled else "disable",
                        [(router, name, self._json(policy), self._json(after))])
        return Outcome(after, True)

    def delete(self, router: str, name: str) -> int:
        """Delete a policy (valid or not); its id, which the daemon's cookies carry."""
        with self._writing() as now:
            row = self._row(router, name)
            self._m.PolicyStatus.objects.using(self.alias).filter(policy_id=row["id"]).delete()
            self._m.Policy.objects.using(self.alias).filter(id=row["id"]).delete()
            self._audit(now, "del", [(router, name, _audited(router, name, _fields_of(row)), None)])
        return row["id"]

    # --- the daemon's writes ---------------------------------------------------------------------

    def write_statuses(self, statuses: Iterable[Status]) -> None:
        """Upsert the daemon's view of its policies, and drop statuses whose policy is gone."""
        self._fresh()
        now = timezone.now()
        rows = [self._m.PolicyStatus(policy_id=s.policy_id, state=s.state.value, error=s.error,
                                     installed_at=s.installed_at, expired_at=s.expired_at, packets=s.packets,
                                     bytes=s.bytes, updated_at=now) for s in statuses]
        table = self._m.PolicyStatus.objects.using(self.alias)
        with transaction.atomic(using=self.alias):
            table.bulk_create(rows, batch_size=BATCH, update_conflicts=True, unique_fields=["policy"],
                              update_fields=[*_STATUS_COLUMNS[1:], "updated_at"])
            table.exclude(policy_id__in=self._m.Policy.objects.using(self.alias).values("id")).delete()

    def mark_expired(self, policy_id: int, when: datetime) -> None:
        """A timeout fired on the switch: the policy stays off it until it is enabled again."""
        with transaction.atomic(using=self.alias):
            status = self.statuses([policy_id]).get(policy_id)
            counters = (status.packets, status.bytes) if status else (0, 0)
            self.write_statuses([Status(policy_id, State.EXPIRED, "", None, when, *counters)])

    # --- export and import -----------------------------------------------------------------------

    def export(self, router: str | None = None) -> str:
        """The YAML file of every configured router (or one router) and its policies; rows that
        plain SQL made invalid are written as stored, so that an import names them."""
        if router is not None and router not in self.routers and \
                not self._m.Policy.objects.using(self.alias).filter(router=router).exists():
            self._router(router)
        names = [router] if router is not None else sorted(self.routers)
        items: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
        good, bad = self._read(**({} if router is None else {"router": router}))
        for policy in good:
            items.setdefault(policy.router, []).append({"name": policy.name, **document.fields(policy)})
        for row in bad:
            items.setdefault(row.router, []).append({"name": row.name, **row.fields})
        return document.export(items)

    def import_file(self, path: Path, dry_run: bool = False) -> document.Difference:
        """Make each router the file names hold exactly its policies, in one transaction; with
        dry_run, only the difference. PolicyError names the file's key at fault."""
        desired = document.read(path)
        for router, policies in desired.items():
            where = key_path("policies", router)
            try:
                config = self._router(router)
            except PolicyError as exc:
                raise PolicyError(where, exc.message) from None
            for i, policy in enumerate(policies):
                try:
                    checks.check_via(policy, config)
                except PolicyError as exc:
                    raise exc.under(key_path("policies", router, Index(i))) from None
            clash = checks.first_conflict(policies, checks.own_addresses(config))
            if clash:  # named at the later of the two in the file
                position = {id(p): i for i, p in enumerate(policies)}
                first, later = sorted(clash, key=lambda p: position[id(p)])
                raise checks.conflict(later, first).under(key_path("policies", router, Index(position[id(later)])))
        with self._writing() as now:
            current: dict[str, list[Policy]] = {}
            for router in desired:
                current[router], bad = self._read(router=router)
                if bad:
                    raise PolicyError(key_path("policies", router),
                                      f"the stored policy {bad[0].name!r} is invalid ({bad[0].error}): fix it "
                                      "with policy set, or delete it, before importing")
            difference = document.difference(current, desired)
            if not dry_run and difference:
                self._apply(difference, now)
        return difference

    def _update_rows(self, policies: list[Policy], now: datetime) -> None:
        """One UPDATE statement run for many rows: Django's bulk_update builds a CASE per column
        and row, which took 25 s for 10,000 policies; this takes well under one."""
        connection = connections[self.alias]
        quote, columns = connection.ops.quote_name, COLUMNS[3:]
        sql = (f"UPDATE {quote(self._m.Policy._meta.db_table)} SET "
               + ", ".join(f"{quote(c)} = %s" for c in (*columns, "updated_at")) + f" WHERE {quote('id')} = %s")
        when = connection.ops.adapt_datetimefield_value(now)
        rows = [[row[c] for c in columns] + [when, p.id] for p, row in ((p, _row_of(p)) for p in policies)]
        with connection.cursor() as cursor:
            cursor.executemany(sql, rows)

    def _apply(self, difference: document.Difference, now: datetime) -> None:
        table = self._m.Policy.objects.using(self.alias)
        deleted = [p.id for p in difference.deletes]
        for start in range(0, len(deleted), BATCH):
            self._m.PolicyStatus.objects.using(self.alias).filter(policy_id__in=deleted[start:start + BATCH]).delete()
            table.filter(id__in=deleted[start:start + BATCH]).delete()
        if difference.changes:
            self._update_rows([after for _, after in difference.changes], now)
        table.bulk_create([self._m.Policy(**_row_of(p), created_at=now, updated_at=now) for p in difference.adds],
                          batch_size=BATCH)
        self._audit(now, "import", [
            *((p.router, p.name, None, self._json(p)) for p in difference.adds),
            *((a.router, a.name, self._json(b), self._json(a)) for b, a in difference.changes),
            *((p.router, p.name, self._json(p), None) for p in difference.deletes)])
