"""The transactional outbox: an event is sent if and only if the application's transaction commits.

``App.publish(name, data, connection=conn)`` takes the application's
SQLAlchemy ``Connection`` or ``Session`` and writes the event in its
transaction, in one of two ways:

- the transport is a SQL queue (``sqla+``) in that same database: the queue
  row itself is written through the application's connection
  (:meth:`asyncevents.core.transport.sql.transport.SqlTransport.enqueue_through`); the
  commit makes it visible to the workers, a rollback removes it. Nothing to
  relay.
- otherwise: a row in the ``asyncevents_outbox`` table of the application's
  database (:mod:`asyncevents.core.store.outbox`, created on first use).
  Right after the commit :meth:`Outbox.relay` sends those rows to the
  transport and deletes them, on a connection of its own: never inside the
  committed transaction, never failing the application's commit (a relay
  that fails leaves the rows). A worker's periodic :meth:`Outbox.sweep`
  sends whatever a crash or an outage left behind, oldest first.

The relay never stalls the application: it makes one quick try
(:meth:`~asyncevents.core.transport.base.Transport.fail_fast`: 0.1 s to
connect, no retry loop), so with the broker down a commit returns at once
and its events wait in the outbox for the sweep (before, kombu's retries held
each commit about 10 s). An outage of the relay is two warnings in the
application's log: when the first relay fails, and when one works again,
with how many events were left to the sweep meanwhile.

When is "right after the commit"? For a ``Session``, its ``after_commit``
event. A Core ``Connection`` has no event after its commit (``commit`` fires
before it), so the relay runs when the connection next begins a transaction
or goes back to the pool, whichever comes first: at the end of
``with engine.begin() as conn:``. A relay is harmless at any time: it sends
only rows it finds committed, so a commit that failed sends nothing. The
relay borrows a second connection from the application's pool; a pool with
none to spare gets the relay on a thread, which takes the application's
connection as soon as it is back (:meth:`Outbox.close` waits for it).

Rows are deleted only after the transport accepted them, in the transaction
that locked them: at least once, in order, never lost. A relayed event may
be sent twice after a crash at the wrong moment; the dispatcher makes one
delivery per (event, subscription) whatever the number of copies.

Workers sweep the outbox of ``ASYNCEVENTS_OUTBOX_URL``, by default the
store's database (``ASYNCEVENTS_DATABASE_URL``): right when the application
keeps asyncevents' tables in its own database. An application whose database
is another one must give workers ``ASYNCEVENTS_OUTBOX_URL``; publishing into
an outbox that this process's settings would not sweep logs a warning once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy import Connection, Engine, event
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, SessionTransaction
from sqlalchemy.pool import QueuePool

from asyncevents.core.clock import naive_utcnow
from asyncevents.core.messages import MalformedMessage, TriggerMessage, decode
from asyncevents.core.retry.base import RetryManagement
from asyncevents.core.retry.outage import OutageLog
from asyncevents.core.settings import Settings
from asyncevents.core.store import (
    OutboxRow,
    add_to_outbox,
    outbox_engine,
    parse_database_url,
    same_database,
    take_from_outbox,
)
from asyncevents.core.transport import Transport
from asyncevents.core.transport.base import FAIL_FAST, first_line, safe_url
from asyncevents.core.transport.sql.transport import SqlTransport
from asyncevents.errors import InvalidPayload

__all__ = ["Outbox", "Transactional"]

log = structlog.get_logger("asyncevents.outbox")

#: What ``publish(..., connection=...)`` takes: the application's connection or session.
Transactional = Connection | Session

_KEY = "asyncevents.outbox"
# A sweep sends at most this many batches per run, so that the worker's loop
# (acks, lease renewals) is not held up for long.
_SWEEP_BATCH = 100
_SWEEP_BATCHES = 10
_LISTEN_LOCK = threading.Lock()


class Outbox:
    """The transactional outbox of one App: writes, the after-commit relay, the sweep."""

    def __init__(self, settings: Settings, transport: Transport,
                 retries: Callable[[], RetryManagement]) -> None:
        self.settings = settings
        self.transport = transport
        self.retries = retries
        self._sweep_engine: Engine | None = None
        self._lock = threading.Lock()
        self._warned: set[str] = set()
        self._relays: list[threading.Thread] = []
        #: Relays that failed: one warning when they start failing, one when one works again.
        self.relay_outage = OutageLog(
            "outbox relay", counted="events left for the sweep",
            lost="outbox relay failed; a worker's sweep will send the events",
            back="outbox relay works again", logger=log)
        #: Sweeps that failed: the same two lines.
        self.sweep_outage = OutageLog(
            "outbox sweep", counted="failed sweeps",
            lost="outbox sweep failed; the worker tries again", back="outbox sweep works again",
            logger=log)

    @property
    def swept_url(self) -> str | None:
        """The database whose outbox workers sweep; None when sweeping is off (``""``)."""
        url = self.settings.outbox_url
        if url is None:
            return self.settings.database_url
        return url or None

    def write(self, target: Transactional, messages: Sequence[TriggerMessage], *,
              delay: float | None = None) -> None:
        """Write ``messages`` in ``target``'s transaction; they are sent once it commits.

        ``delay``: not sent before that many seconds from now (nor before the commit).
        """
        if delay is not None and delay < 0:
            raise InvalidPayload(f"delay must be zero or more seconds, not {delay}")
        conn, session = _connection_of(target)
        if not messages:
            return
        transport = self.transport
        if isinstance(transport, SqlTransport) and same_database(conn.engine.url,
                                                                 transport.database):
            transport.enqueue_through(conn, messages, delay=delay or 0.0)
            return
        due = naive_utcnow() + timedelta(seconds=delay) if delay else None
        add_to_outbox(conn, self.settings.queue_prefix,
                      [(m.event_id, m.body(), due) for m in messages])
        self._warn_unswept(conn.engine.url)
        pending = [_Pending(self, conn.engine, m.event_id) for m in messages]
        if session is not None:
            _follow_session(session, pending)
        else:
            _follow_connection(conn, pending)

    def relay(self, engine: Engine, event_ids: Sequence[str]) -> int:
        """Send those events' outbox rows, if committed and still there; return how many.

        Never raises, never waits for a broker that does not answer at once:
        one try, ``FAIL_FAST`` seconds to connect; the rows of a relay that
        failed stay for the sweep.
        """
        began = time.monotonic()
        try:
            with self.transport.fail_fast(FAIL_FAST):
                sent = take_from_outbox(engine, self.settings.queue_prefix, self._send,
                                        event_ids=event_ids)
        except Exception as exc:
            self.relay_outage.failed(first_line(exc), count=len(event_ids))
            return 0
        self.relay_outage.recovered(began=began)
        return sent

    def relay_soon(self, engine: Engine, event_ids: Sequence[str]) -> None:
        """:meth:`relay` on a thread of its own (:meth:`close` waits for it).

        For a pool with no connection to spare until the application's is back.
        """
        thread = threading.Thread(target=self.relay, args=(engine, list(event_ids)),
                                  name="asyncevents-outbox-relay")
        with self._lock:
            self._relays = [t for t in self._relays if t.is_alive()]
            self._relays.append(thread)
        thread.start()

    def sweep(self) -> int:
        """Send the oldest rows of the swept outbox (``ASYNCEVENTS_OUTBOX_URL``); return how many.

        Run by workers every ``outbox_sweep_seconds``. An error goes up (the
        worker logs it); the rows stay for the next sweep.
        """
        engine = self._engine()
        if engine is None:
            return 0
        sent = 0
        for _ in range(_SWEEP_BATCHES):
            taken = take_from_outbox(engine, self.settings.queue_prefix, self._send,
                                     limit=_SWEEP_BATCH)
            sent += taken
            if taken < _SWEEP_BATCH:
                break
        if sent:
            log.info("outbox sweep sent events left after their commit", events=sent)
        return sent

    def sweep_or_log(self) -> int:
        """:meth:`sweep`, a failure logged rather than raised (a worker's sweeps).

        An outage is two lines: a warning at the first sweep that fails, one
        line at the next that works, with how many failed meanwhile. A
        malformed ``ASYNCEVENTS_OUTBOX_URL`` is still a ``ConfigError``: no
        later sweep could work.
        """
        self._engine()
        began = time.monotonic()
        try:
            sent = self.sweep()
        except Exception as exc:
            self.sweep_outage.failed(first_line(exc), every=self.settings.outbox_sweep_seconds)
            return 0
        self.sweep_outage.recovered(began=began)
        return sent

    def close(self) -> None:
        """Wait for relays under way, then release the sweep's connections."""
        with self._lock:
            relays, self._relays = self._relays, []
        for thread in relays:
            thread.join()
        with self._lock:
            engine, self._sweep_engine = self._sweep_engine, None
        if engine is not None:
            engine.dispose()

    def _engine(self) -> Engine | None:
        url = self.swept_url
        if url is None:
            return None
        with self._lock:
            if self._sweep_engine is None:
                self._sweep_engine = outbox_engine(url)
            return self._sweep_engine

    def _send(self, rows: list[OutboxRow]) -> None:
        """Hand rows to the transport in order; raise unless all were accepted."""
        now = naive_utcnow()
        batch: list[TriggerMessage] = []
        for row in rows:
            try:
                message = decode("trigger", row.message)
            except MalformedMessage as exc:
                # Nothing will ever make it sendable: drop it rather than block the rest.
                log.error("malformed outbox row dropped", event_id=row.event_id,
                          problem=str(exc))
                continue
            assert isinstance(message, TriggerMessage)
            wait = (row.due_at - now).total_seconds() if row.due_at is not None else 0.0
            if wait > 0:
                if batch:
                    self.transport.enqueue_many(batch)
                    batch = []
                self.retries().schedule(message, wait)
            else:
                batch.append(message)
        if batch:
            self.transport.enqueue_many(batch)

    def _warn_unswept(self, url: URL) -> None:
        where = url.render_as_string(hide_password=True)
        if where in self._warned:
            return
        self._warned.add(where)
        swept = self.swept_url
        try:
            if swept is not None and same_database(url, parse_database_url(swept)):
                return
        except Exception as exc:  # a bad URL: the worker says so at start-up
            log.warning("cannot tell which outbox workers sweep", error=first_line(exc))
            return
        log.warning("events written to an outbox that workers with these settings do not "
                    "sweep: give workers ASYNCEVENTS_OUTBOX_URL for this database, or "
                    "events left by a crash after a commit are never sent",
                    outbox=where, swept=safe_url(swept) if swept else "off")


@dataclass(frozen=True)
class _Pending:
    """One event written in an application's transaction, to relay after its commit."""

    outbox: Outbox
    engine: Engine
    event_id: str


def _connection_of(target: Transactional) -> tuple[Connection, Session | None]:
    if isinstance(target, Session):
        return target.connection(), target
    if isinstance(target, Connection):
        return target, None
    raise TypeError("connection= takes a SQLAlchemy Connection or Session, "
                    f"not {type(target).__name__}")


def _spare_connection(engine: Engine) -> bool:
    """True when the application's pool lends the relay a connection without waiting."""
    pool = engine.pool
    if isinstance(pool, QueuePool):
        return pool.checkedin() > 0 or pool.checkedout() < pool.size()
    return True  # a new connection each time, or the same one (SQLite in memory)


def _relay(pending: list[_Pending], *, releasing: bool) -> bool:
    """Relay each outbox's events (in publish order) through its engine.

    The relay borrows a connection from the application's pool. When the
    pool has none to spare: with ``releasing`` (the application's connection
    is being released) on a thread, which gets it the moment it is back;
    otherwise not now, and False is returned.
    """
    groups: dict[tuple[int, int], list[_Pending]] = {}
    for item in pending:
        groups.setdefault((id(item.outbox), id(item.engine)), []).append(item)
    if not releasing and not all(_spare_connection(items[0].engine)
                                 for items in groups.values()):
        return False
    for items in groups.values():
        outbox, engine = items[0].outbox, items[0].engine
        event_ids = [item.event_id for item in items]
        if _spare_connection(engine):
            outbox.relay(engine, event_ids)
        else:
            outbox.relay_soon(engine, event_ids)
    return True


# --- a Session: relayed from its after_commit event -------------------------------------

def _follow_session(session: Session, pending: list[_Pending]) -> None:
    session.info.setdefault(_KEY, []).extend(pending)
    with _LISTEN_LOCK:
        if not event.contains(session, "after_commit", _after_commit):
            event.listen(session, "after_commit", _after_commit)
            event.listen(session, "after_transaction_end", _after_transaction_end)


def _after_commit(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a SAVEPOINT released: the transaction is still open
    pending: list[_Pending] = session.info.pop(_KEY, [])
    if pending:
        _relay(pending, releasing=True)


def _after_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # rolled back (a commit was relayed already)
        session.info.pop(_KEY, None)


# --- a Core Connection: relayed at its next begin or when it returns to the pool ---------

@dataclass
class _ConnectionState:
    """Outbox events of one pooled connection: in its open transaction, and committed."""

    open: list[_Pending] = field(default_factory=list)
    committed: list[_Pending] = field(default_factory=list)


def _follow_connection(conn: Connection, pending: list[_Pending]) -> None:
    engine = conn.engine
    with _LISTEN_LOCK:
        if not event.contains(engine, "commit", _on_commit):
            event.listen(engine, "commit", _on_commit)
            event.listen(engine, "rollback", _on_rollback)
            event.listen(engine, "begin", _on_begin)
            event.listen(engine.pool, "checkin", _on_checkin)
    # conn.info belongs to the pooled DBAPI connection: the pool's checkin sees it too.
    state: _ConnectionState = conn.info.setdefault(_KEY, _ConnectionState())
    state.open.extend(pending)


def _state(conn: Connection) -> _ConnectionState | None:
    # These events fire for every connection of the engine. An invalidated one
    # would try to reconnect to answer conn.info: its transaction, and the
    # rows in it, are lost anyway.
    if conn.closed or conn.invalidated:
        return None
    found: _ConnectionState | None = conn.info.get(_KEY)
    return found


def _on_commit(conn: Connection) -> None:
    # Fired *before* the DBAPI commit: only note what this commit covers.
    state = _state(conn)
    if state is not None and state.open:
        state.committed.extend(state.open)
        state.open.clear()


def _on_rollback(conn: Connection) -> None:
    state = _state(conn)
    if state is not None:
        state.open.clear()


def _on_begin(conn: Connection) -> None:
    state = _state(conn)
    if state is not None and state.committed and _relay(state.committed, releasing=False):
        state.committed = []  # else they wait for the connection's return to the pool


def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
    state: _ConnectionState | None = record.info.pop(_KEY, None)
    if state is not None and state.committed:
        _relay(state.committed, releasing=True)
