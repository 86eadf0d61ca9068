"""The master's lease for one switch, in PostgreSQL: a session-level advisory lock and a row.

The lock frees the instant the holder's session ends (kill -9, a reset host). A holder that stops
answering (SIGSTOP, a hung host) keeps its session open, so the row carries an expiry in the
server's clock that the holder renews every lease/4; a contender that finds it expired ends the
holder's backend (pg_terminate_backend) and takes the lock on its next try. Every takeover adds one
to the row's generation: the OpenFlow generation id. This thread alone touches its connection and
writes the row; it publishes a LeaseState, replaced whole, for the reconcile thread.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

import psycopg

from .. import dburl
from .roles import LeaseState, lock_key

LOG = logging.getLogger("taprouter.ha")

TRY_EVERY = 0.3  # seconds between a standby's tries
CONNECT_TIMEOUT = 2

CLOCK_MS = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint"
TABLE = """CREATE TABLE IF NOT EXISTS taprouter_ha_lease (
    dpid bigint PRIMARY KEY, router text NOT NULL, holder text NOT NULL, generation bigint NOT NULL,
    pid integer NOT NULL, expires timestamptz NOT NULL)"""


def connect_args(url: str) -> dict:
    """libpq's keyword arguments for the `database:` URL (PostgreSQL only)."""
    parsed = dburl.parse(url)
    args: dict = {"dbname": parsed.name, "autocommit": True, "connect_timeout": CONNECT_TIMEOUT,
                  "application_name": "taprouter-ha"}
    for key, value in (("user", parsed.user), ("password", parsed.password), ("host", parsed.host)):
        if value:
            args[key] = value
    if parsed.port is not None:
        args["port"] = parsed.port
    args.update(dict(parsed.options))
    # A TCP session to a server whose host vanished is found dead in seconds, not hours.
    if parsed.host and not parsed.host.startswith("/"):
        args.update(keepalives=1, keepalives_idle=2, keepalives_interval=1, keepalives_count=2,
                    tcp_user_timeout=4000)
    return args


class Lease:
    def __init__(self, url: str, router: str, dpid: int, node: str, lease_seconds: float,
                 wake: Callable[[], None] = lambda: None) -> None:
        self.url, self.router, self.dpid, self.node = url, router, dpid, node
        self.lease_seconds = lease_seconds
        self.key = lock_key(dpid)
        self.state = LeaseState()
        self._wake = wake
        self._conn: psycopg.Connection | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._defer_until = 0.0  # a standby back from an outage lets a fenced master retake first

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"lease-{self.router}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Give the lease up (a clean stop hands over at once) and end the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=3)
        self._close()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.round(started)
            every = min(TRY_EVERY, self.lease_seconds / 4) if self.state.held else TRY_EVERY
            self._stop.wait(max(0.0, every - (time.monotonic() - started)))

    def round(self, now: float) -> LeaseState:
        """One try (standby) or renewal (master); publishes and returns the new state."""
        before = self.state
        try:
            state = self._try(now)
        except psycopg.Error as exc:
            self._close()
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if not before.error:
                LOG.warning("router %s: the HA lease's database cannot be asked: %s", self.router, text)
            # The lock went with the session; a standby waits a lease before trying again, so that
            # a master fenced by the same outage takes its lease back first.
            if not before.held:
                self._defer_until = now + self.lease_seconds
            state = LeaseState(False, before.generation, before.holder, before.renewed, before.answered, text)
            if before.held:
                # Keep `held` so the role logic fences rather than steps down: we do not know who is
                # master, and the switch's role is left as it was.
                state = LeaseState(True, before.generation, before.holder, before.renewed, before.answered, text)
        if (state.held, state.generation, state.holder, bool(state.error)) != (
                before.held, before.generation, before.holder, bool(before.error)):
            LOG.info("router %s: lease %s, generation %d, holder %s%s", self.router,
                     "held" if state.held else "not held", state.generation, state.holder or "-",
                     f" ({state.error})" if state.error else "")
        self.state = state
        self._wake()
        return state

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            conn = psycopg.connect(**connect_args(self.url))
            try:
                conn.execute(TABLE)
            except psycopg.errors.UniqueViolation:
                pass  # the other daemon created it at the same moment
            self._conn = conn
        return self._conn

    def _try(self, now: float) -> LeaseState:
        before = self.state
        fresh = self._conn is None or self._conn.closed
        conn = self._connection()
        if before.held and not fresh:
            row = conn.execute(
                "UPDATE taprouter_ha_lease SET expires = now() + make_interval(secs => %s) "
                "WHERE dpid = %s AND pid = pg_backend_pid() RETURNING generation",
                (self.lease_seconds, self.dpid)).fetchone()
            if row is not None:
                return LeaseState(True, row[0], self.node, now, now)
            LOG.error("router %s: the lease row no longer names this daemon; stepping down", self.router)
            self._close()
            return self._observe(self._connection(), now)
        if now < self._defer_until:
            return self._observe(conn, now)
        got = conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()[0]
        if not got:
            return self._observe(conn, now)
        # The generation is the server's clock in milliseconds, or one more than the last if that
        # is ahead: it grows at every takeover, and keeps growing past a database made afresh (a
        # restore, a new server), which a switch that kept its last generation would otherwise
        # refuse as stale for as long as it runs.
        row = conn.execute(
            "INSERT INTO taprouter_ha_lease AS l (dpid, router, holder, generation, pid, expires) "
            "VALUES (%s, %s, %s, " + CLOCK_MS + ", pg_backend_pid(), now() + make_interval(secs => %s)) "
            "ON CONFLICT (dpid) DO UPDATE SET router = excluded.router, holder = excluded.holder, "
            "generation = greatest(l.generation + 1, excluded.generation), pid = excluded.pid, "
            "expires = excluded.expires RETURNING generation",
            (self.dpid, self.router, self.node, self.lease_seconds)).fetchone()
        LOG.warning("router %s: took the master's lease, generation %d", self.router, row[0])
        return LeaseState(True, row[0], self.node, now, now)

    def _observe(self, conn: psycopg.Connection, now: float) -> LeaseState:
        """Not the holder: who is, and whether their row expired (then end their session)."""
        row = conn.execute("SELECT holder, generation, pid, expires < now(), pid = pg_backend_pid() "
                           "FROM taprouter_ha_lease WHERE dpid = %s", (self.dpid,)).fetchone()
        if row is None:
            return LeaseState(False, 0, "", None, now)
        holder, generation, pid, expired, ours = row
        if expired and not ours and now >= self._defer_until:
            ended = conn.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]
            LOG.warning("router %s: the lease of %s expired (not renewed for %.1f s); %s its session", self.router,
                        holder, self.lease_seconds, "ended" if ended else "could not end")
        return LeaseState(False, generation, holder, None, now)

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except psycopg.Error:
                pass
