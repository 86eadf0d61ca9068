"""The daemon's side of the policy store: each router's policies kept equal to the database, and
their states and counters written back.

One thread owns the reading of the store (Django's connections are per thread). It reads every
policy at start;
a writer's notification (the control socket's POST /v1/policies/changed) re-reads the policies it
names at once, and waits until the switch has them; and a change of the store's generation (rows
written by plain SQL, behind our back) re-reads everything, checked once no writer has spoken for
GENERATION_POLL seconds, or every GENERATION_MAX seconds while they keep speaking.
Nothing polls the policy table itself.

Writers' own changes move the generation too. A notification that says by how much (the store's
generation before and after its write, store.last_write) explains that move: the generation the
policies were read at goes forward over the chain of explained moves, and only a move nothing
explains (plain SQL, a writer that did not say) costs a reading of every policy. With 10,000
policies that reading took 0.1 to 0.3 s, which a notification behind it waited for.

A second thread, with a connection of its own, writes the policies' states and counters back
every WRITE_EVERY seconds, so that no notification waits behind a write (10 to 30 ms on SQLite
for a few dozen rows, 0.4 s for 10,000 after an import).

Counters: the switch counts per flow, from when the flow went in. A policy's total is what the
store held when the daemon started, plus what the switch counted since; when a policy's count
on the switch goes back (its flows were put in again: a switch restart, a change of the policy),
what it had counted is kept.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Iterable, Mapping, Protocol

from .model import Policy, State, Status

LOG = logging.getLogger("taprouter.policy")

GENERATION_POLL = 2.0  # seconds without a notification before plain-SQL changes are looked for
GENERATION_MAX = 4.0  # seconds between looks while notifications keep coming: inside the 5 s promised
WRITE_EVERY = 2.0  # seconds between writes of states and counters (and at once when a state changes)
APPLY_WAIT = 5.0  # seconds a notification waits for the switch to take the change
# Statuses written in one transaction: 200 take 17 ms on SQLite, 10,000 (after an import) 0.4 s,
# which a writer (the policy commands) would wait behind for the database's write lock.
WRITE_BATCH = 200


class PolicyRouter(Protocol):
    """What the source needs of a router (controller/router.py's Router)."""

    name: str

    policy_report: object  # a PolicyReport: states, expired, counters by policy id
    # False while an HA standby: the master writes the policies' states and counters (its switch's);
    # a router without it writes always.
    writes_store: bool

    def set_policies(self, policies: tuple[Policy, ...], reenabled: Iterable[int] = (),
                     expired: Mapping[int, float] | None = None) -> int: ...
    def wait_applied(self, ticket: int, timeout: float) -> bool: ...


@dataclass(frozen=True)
class Roster:
    """Routers a reload started (their policies to read and hand over) and removed (forgotten)."""
    added: tuple[str, ...]
    removed: tuple[str, ...]


@dataclass(frozen=True)
class Changed:
    router: str
    names: tuple[str, ...] | None  # None: all of the router's
    done: threading.Event
    result: dict
    moved: tuple[int, int] | None = None  # the generation before and after the write of these names


class PolicySource:
    def __init__(self, open_store: Callable[[], object], routers: Mapping[str, PolicyRouter]) -> None:
        self._open_store = open_store
        self.routers = dict(routers)
        self._requests: queue.Queue[Changed | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="policies", daemon=True)
        self._writer = threading.Thread(target=self._write_loop, name="policy-states", daemon=True)
        self._stopping = threading.Event()
        self._write_now = threading.Event()  # a writer's change is on the switch: write its state now
        self._urgent: dict[str, set[int]] = {}  # router -> the policies of those changes
        self._lock = threading.Lock()  # the counters' and statuses' books below, between the two threads
        self._policies: dict[str, dict[int, Policy]] = {name: {} for name in self.routers}
        self._ids: dict[str, dict[str, int]] = {name: {} for name in self.routers}  # router -> name -> id
        self._offsets: dict[int, tuple[int, int]] = {}  # policy id -> what its total adds to the switch's
        self._last_seen: dict[int, tuple[int, int]] = {}  # policy id -> the switch's count last time
        self._written: dict[int, Status] = {}
        self._reports: dict[str, object] = {}  # router -> the report last written from
        self.totals: dict[int, tuple[int, int]] = {}  # policy id -> packets, bytes (replaced whole)
        self.error: str | None = None  # why the store cannot be read, while it cannot
        self._ready = threading.Event()
        self.loads: list[int | None] = []  # the generation of each reading of every policy, in order
        self._generation: int | None = None  # the store's generation the policies are read at
        self._moves: dict[int, int] = {}  # explained moves not yet reached: generation before -> after

    def start(self) -> None:
        self._thread.start()
        self._writer.start()

    def stop(self) -> None:
        self._requests.put(None)
        self._stopping.set()
        self._write_now.set()

    def changed(self, router: str, names: Iterable[str] | None, wait: float = APPLY_WAIT,
                moved: tuple[int, int] | None = None) -> dict:
        """A writer changed these policies (None: any of the router's), moving the store's generation
        as `moved` says when it says: re-read them, and return once the switch has them (or `wait`
        passed), saying which."""
        if router not in self.routers:
            raise KeyError(router)
        request = Changed(router, None if names is None else tuple(names), threading.Event(), {}, moved)
        self._requests.put(request)
        request.done.wait(wait + 1.0)
        return request.result or {"router": router, "applied": False, "error": "the policy source did not answer"}

    def routers_changed(self, added: Mapping[str, PolicyRouter], removed: Iterable[str]) -> None:
        """A reload started these routers and removed those: the routers are looked up here at
        once (a writer may name an added one next), their books kept by the thread, which reads
        an added router's policies and hands them over as at start (expiry and counters too)."""
        removed = tuple(removed)
        self.routers = {**{n: r for n, r in self.routers.items() if n not in removed}, **added}
        self._requests.put(Roster(tuple(added), removed))

    def written(self, policy_id: int) -> Status | None:
        """What the store was last told of a policy (its installed_at, for the control socket)."""
        return self._written.get(policy_id)

    # --- the thread ---------------------------------------------------------------------------------

    def _run(self) -> None:
        store = None
        # Once every policy was read, a store opened again (after a failure) hands the routers what
        # changed: the store's expiry and counters at start are the previous daemon's, and read again
        # they would undo re-enablings and count again what was counted since.
        loaded = False
        last_check = 0.0
        while True:
            try:
                if store is None:
                    opened = self._open_store()
                    self._generation = self._load_all(opened, first=not loaded)
                    self._moves = {}
                    store, loaded = opened, True  # only once read: a store that opens but fails is opened again
                    last_check = time.monotonic()
                    self.error = None
                    self._ready.set()
                request = self._requests.get(timeout=GENERATION_POLL)
            except queue.Empty:
                request = False
            except Exception as exc:  # the database is gone, locked, or not migrated: keep trying
                self._fail(f"{exc}")
                time.sleep(GENERATION_POLL)
                continue
            if request is None:
                return
            if isinstance(request, Changed) and request.router not in self.routers:
                request.result.update(router=request.router, applied=False, error="the router was removed")
                request.done.set()
                continue
            try:
                if isinstance(request, Roster):
                    self._roster(store, request)
                elif request:
                    self._answer(store, request)
                    # The writer was told the switch has it: `policy list` must say so now, not
                    # up to WRITE_EVERY later.
                    mine, ids = self._policies[request.router], self._ids[request.router]
                    named = set(mine) if request.names is None else {ids[n] for n in request.names if n in ids}
                    with self._lock:
                        self._urgent.setdefault(request.router, set()).update(named)
                    self._write_now.set()
                now = time.monotonic()
                # Reading every policy again costs 0.1 s or more at 10,000 of them: the generation
                # is checked when no writer has spoken for GENERATION_POLL seconds, and at least
                # every GENERATION_MAX while they keep speaking, not after each notification.
                if now - last_check >= (GENERATION_POLL if not request else GENERATION_MAX):
                    last_check = now
                    now_generation = store.generation()
                    if now_generation is not None and now_generation != self._generation:
                        self._generation = self._load_all(store)
                        self._moves = {}
            except Exception as exc:
                self._fail(f"{exc}")
                if isinstance(request, Changed):
                    request.result.update(router=request.router, applied=False, error=str(exc))
                    request.done.set()
                store = None  # open it again: a server may have restarted
                time.sleep(GENERATION_POLL)

    def _write_loop(self) -> None:
        """The second thread: what the routers report, written back a batch at a time, once the
        first reading gave the books the store's own figures."""
        while not self._ready.wait(GENERATION_POLL):
            if self._stopping.is_set():
                return
        store, unwritten, failed = None, [], None
        while not self._stopping.is_set():
            woken = False
            if not unwritten:
                woken = self._write_now.wait(WRITE_EVERY)
                self._write_now.clear()
            if self._stopping.is_set():
                return
            try:
                if store is None:
                    store = self._open_store()
                if not unwritten:
                    with self._lock:
                        urgent, self._urgent = self._urgent, {}
                        unwritten = self._statuses(urgent if woken else None)
                batch, unwritten = unwritten[:WRITE_BATCH], unwritten[WRITE_BATCH:]
                if batch:
                    store.write_statuses(batch)
                failed = None
            except Exception as exc:  # kept, and written once the database answers again
                if failed != str(exc):
                    LOG.error("policies: cannot write states and counters to the policy store (%s)", exc)
                failed, store = str(exc), None
                self._stopping.wait(GENERATION_POLL)

    def _roster(self, store, request: Roster) -> None:
        for name in request.removed:
            self._policies.pop(name, None)
            self._ids.pop(name, None)
        added = {n: self.routers[n] for n in request.added if n in self.routers}
        if not added:
            return
        for name, router in added.items():
            mine = {p.id: p for p in store.policies(name)}
            self._first_hand(name, router, mine, store.statuses(list(mine)))
        LOG.info("policies: read for the router(s) a reload started: %s", ", ".join(added))

    def _first_hand(self, name: str, router: PolicyRouter, mine: dict[int, Policy], statuses) -> None:
        """A router's first policies, with their expiry and counters as the store has them."""
        expired = {pid: s.expired_at.timestamp() for pid, s in statuses.items()
                   if pid in mine and s.state is State.EXPIRED and s.expired_at is not None}
        with self._lock:
            self._offsets.update((pid, (s.packets, s.bytes)) for pid, s in statuses.items() if pid in mine)
            self._written.update((pid, s) for pid, s in statuses.items() if pid in mine)
        router.set_policies(tuple(mine.values()), expired=expired)
        self._keep(name, mine)

    def _fail(self, why: str) -> None:
        if self.error != why:
            LOG.error("policies: cannot read the policy store (%s); the switch keeps what it has", why)
        self.error = why

    def _load_all(self, store, first: bool = False) -> int:
        """Every router's policies afresh; on the first load, their expiry and counters too."""
        generation = store.generation()
        everything = store.policies()
        statuses = store.statuses() if first else {}
        for name, router in self.routers.items():
            mine = {p.id: p for p in everything if p.router == name}
            if first:
                self._first_hand(name, router, mine, statuses)
                continue
            if name not in self._policies:  # a router a reload started, not read yet (the store failed)
                self._first_hand(name, router, mine, store.statuses(list(mine)))
                continue
            if not _same(mine, self._policies[name]) or router.policy_report.expired:
                # Rows read again unchanged are the same objects (the store keeps them), so a
                # reload that found only what the writers' notifications brought hands nothing over.
                self._hand_over(store, name, mine)
            self._keep(name, mine)
        self.loads.append(generation)
        LOG.info("policies: %d read from the store (generation %s)", len(everything), generation)
        return generation

    def _hand_over(self, store, name: str, mine: dict[int, Policy]) -> int:
        """Give a router its policies; those whose expiry the store no longer has are re-enabled."""
        router = self.routers[name]
        expired = router.policy_report.expired
        reenabled = []
        if expired:
            statuses = store.statuses([pid for pid in expired if pid in mine])
            reenabled = [pid for pid in expired if pid in mine and (statuses.get(pid) is None or
                                                                    statuses[pid].state is not State.EXPIRED)]
        return router.set_policies(tuple(mine.values()), reenabled=reenabled)

    def _answer(self, store, request: Changed) -> None:
        if request.names is None:
            mine = {p.id: p for p in store.policies(request.router)}
            self._keep(request.router, mine)
        else:
            # Only the named rows are read, and the router's policies changed in place: a change
            # costs its own policies, not the router's 10,000. (A failure part way reads everything
            # again: see _run.)
            mine, ids = self._policies[request.router], self._ids[request.router]
            for name in request.names:
                mine.pop(ids.pop(name, None), None)
            for policy in store.named(request.router, request.names):
                mine[policy.id] = policy
                ids[policy.name] = policy.id
        self._explained(request.moved)
        ticket = self._hand_over(store, request.router, mine)
        applied = self.routers[request.router].wait_applied(ticket, APPLY_WAIT)
        request.result.update(router=request.router, applied=applied, policies=len(mine))
        request.done.set()

    def _explained(self, moved: tuple[int, int] | None) -> None:
        """A write whose policies were just read moved the generation from moved[0] to moved[1]:
        go forward over every explained move that now joins up. Moves that start behind where
        the policies are read at are dropped; ones ahead wait for the moves between."""
        if moved is None or self._generation is None or moved[0] < self._generation or moved[0] >= moved[1]:
            return
        self._moves[moved[0]] = moved[1]
        while self._generation in self._moves:
            self._generation = self._moves.pop(self._generation)
        self._moves = {before: after for before, after in self._moves.items() if before > self._generation}

    def _keep(self, router: str, policies: dict[int, Policy]) -> None:
        self._policies[router] = policies
        self._ids[router] = {p.name: pid for pid, p in policies.items()}

    def _statuses(self, only: Mapping[str, set[int]] | None = None) -> list[Status]:
        """States, expiry and counters as the routers report them: what changed since the last write.
        Every policy is looked at, so an unchanged one costs a comparison, not a Status; with `only`,
        just those policies of each router (a writer's change, written at once: with 10,000
        policies a whole sweep after each change costs the threads that apply changes the GIL)."""
        statuses = []
        totals = dict(self.totals)
        for name, router in self.routers.items():
            if not getattr(router, "writes_store", True):
                continue
            report = router.policy_report
            if only is None:
                if report is self._reports.get(name):
                    continue  # the router has published nothing since
                self._reports[name] = report
                states = report.states.items()
            else:
                known = report.states
                states = [(pid, known[pid]) for pid in only.get(name, ()) if pid in known]
            for pid, (state, error) in states:
                status = self._status(pid, state, error, report, totals)
                if status is not None:
                    statuses.append(status)
        self.totals = totals
        return statuses

    def _status(self, pid: int, state: State, error: str, report, totals: dict) -> Status | None:
        """A policy's status to write, None if the store has it already."""
        packets, octets = totals[pid] = self._total(pid, report.counters.get(pid))
        old = self._written.get(pid)
        expired_at = report.expired.get(pid)
        expired_when = datetime.fromtimestamp(expired_at, timezone.utc) if expired_at else None
        if (old is not None and old.state is state and old.error == error and old.packets == packets
                and old.bytes == octets and old.expired_at == expired_when
                and (old.installed_at is not None or state is not State.INSTALLED)):
            return None
        status = Status(pid, state, error,
                        installed_at=(old.installed_at if old and old.installed_at else
                                      datetime.now(timezone.utc) if state is State.INSTALLED else None),
                        expired_at=expired_when, packets=packets, bytes=octets)
        if old == status:
            return None
        self._written[pid] = status
        return status

    def _total(self, pid: int, switch: tuple[int, int] | None) -> tuple[int, int]:
        offset = self._offsets.get(pid, (0, 0))
        if switch is None:
            return offset if pid not in self._last_seen else (offset[0] + self._last_seen[pid][0],
                                                              offset[1] + self._last_seen[pid][1])
        last = self._last_seen.get(pid)
        if last is None:
            # The first count since the daemon started. If the flows outlived it, the store's total
            # holds what they had counted when last written: what came after that write is lost.
            # If they were put in again, what they count now is.
            offset = (max(0, offset[0] - switch[0]), max(0, offset[1] - switch[1]))
        elif switch[0] < last[0]:
            offset = (offset[0] + last[0], offset[1] + last[1])  # counting started again on the switch
        self._offsets[pid] = offset
        self._last_seen[pid] = switch
        return offset[0] + switch[0], offset[1] + switch[1]


def _same(a: Mapping[int, Policy], b: Mapping[int, Policy]) -> bool:
    """The same policies, object for object."""
    return a.keys() == b.keys() and all(policy is b[pid] for pid, policy in a.items())
