"""The transactional outbox: a table in the *application's* database, and its queries.

``App.publish(..., connection=conn)`` writes one row per event through the
application's own connection, in its transaction: the row exists if and only
if that transaction commits. Right after the commit the row is relayed to the
transport and deleted (:mod:`asyncevents.core.publishing.outbox`); what a crash left
behind is relayed by a worker's sweep.

Rows are taken in ``id`` order, in a transaction that stays open while they
are sent, and deleted only after the transport accepted them; a failure
rolls the transaction back and the rows stay (at least once, never lost).
Two takers never hold the same row: PostgreSQL and MariaDB/MySQL lock rows
with ``SELECT ... FOR UPDATE SKIP LOCKED``, so the after-commit relay and a
sweep each send their own; SQLite has one writer, and a take starts with a
write (``UPDATE ... RETURNING`` that changes nothing), so the second taker
waits and then finds nothing. On an engine in ``AUTOCOMMIT`` mode nothing is
locked: two takers may both send a row (at least once still holds).

Each row names its installation (the queue prefix): several may share one
database, and each takes only its own rows.

The table is created on first use (:func:`ensure_outbox_table`). Every
function here takes the application's ``Connection`` (a write in its
transaction) or its ``Engine`` (a transaction of our own, never the
application's).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Index,
    MetaData,
    String,
    Table,
    bindparam,
    create_engine,
    delete,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from asyncevents.core.clock import naive_utcnow
from asyncevents.core.store.columns import LONG_TEXT, MICRO_TIME, ROW_ID
from asyncevents.core.store.engine import normalize_url
from asyncevents.errors import ConfigError

__all__ = [
    "OUTBOX_TABLE",
    "OutboxRow",
    "add_to_outbox",
    "ensure_outbox_table",
    "outbox_engine",
    "outbox_table_exists",
    "parse_database_url",
    "same_database",
    "take_from_outbox",
]

#: The outbox table's name in the application's database.
OUTBOX_TABLE = "asyncevents_outbox"

_metadata = MetaData()
_outbox = Table(
    OUTBOX_TABLE,
    _metadata,
    Column("id", ROW_ID, primary_key=True,
           autoincrement=True),
    Column("event_id", String(36), nullable=False),
    # The installation (queue prefix) it is for: several may share a database.
    Column("installation", String(200), nullable=False),
    # The trigger message's JSON body, as it travels on the queue.
    Column("message", LONG_TEXT,
           nullable=False),
    Column("created_at", MICRO_TIME, nullable=False),
    # A delayed publish: not sent before this time (naive UTC); NULL: at once.
    Column("due_at", MICRO_TIME, nullable=True),
    Index(f"ix_{OUTBOX_TABLE}_event_id", "event_id"),
    Index(f"ix_{OUTBOX_TABLE}_installation", "installation", "id"),
    # Ids are the order of the events: never reuse one.
    sqlite_autoincrement=True,
    mysql_charset="utf8mb4",
)
_c = _outbox.c

# Rows of at most this many event ids per statement (bound parameter limits).
_CHUNK = 500
# (pid, database URL) where the table was found: no need to look again.
_SEEN: set[tuple[int, str]] = set()
_SEEN_LOCK = threading.Lock()


@dataclass(frozen=True)
class OutboxRow:
    """One event waiting in the outbox."""

    id: int
    event_id: str
    message: dict[str, Any]
    """The trigger message's JSON body."""
    due_at: datetime | None
    """Naive UTC time before which it must not be sent, or None."""


def _key(conn: Connection | Engine) -> tuple[int, str]:
    return os.getpid(), conn.engine.url.render_as_string(hide_password=False)


def outbox_table_exists(conn: Connection) -> bool:
    """True when the outbox table is in ``conn``'s database."""
    if _key(conn) in _SEEN:
        return True
    if inspect(conn).has_table(OUTBOX_TABLE):
        with _SEEN_LOCK:
            _SEEN.add(_key(conn))
        return True
    return False


def ensure_outbox_table(conn: Connection) -> None:
    """Create the outbox table in ``conn``'s database unless it is there.

    On SQLite in ``conn``'s own transaction (there is one writer: another
    connection would wait for this one). Elsewhere on a connection of its
    own from the same engine: MariaDB/MySQL commit the open transaction at
    any ``CREATE TABLE``, and on PostgreSQL two applications creating it at
    once must not abort the application's transaction. Either way like
    ``CREATE TABLE IF NOT EXISTS``.
    """
    if outbox_table_exists(conn):
        return
    if conn.dialect.name == "sqlite":
        _metadata.create_all(conn, checkfirst=True)
        return
    try:
        with conn.engine.begin() as own:
            _metadata.create_all(own, checkfirst=True)
    except DBAPIError:
        # Another process created it between our check and our CREATE.
        with conn.engine.begin() as own:
            _metadata.create_all(own, checkfirst=True)


def add_to_outbox(conn: Connection, installation: str,
                  rows: Iterable[tuple[str, dict[str, Any], datetime | None]]) -> None:
    """Insert ``(event id, message body, due_at)`` rows, in order, in ``conn``'s transaction.

    ``installation``: the queue prefix of the installation they are for.
    """
    now = naive_utcnow()
    values = [{"event_id": event_id, "installation": installation,
               "message": json.dumps(body, separators=(",", ":")),
               "created_at": now, "due_at": due_at} for event_id, body, due_at in rows]
    if not values:
        return
    ensure_outbox_table(conn)
    # One statement per row keeps the ids in the order of the list on every
    # database (an executemany may be rewritten into one multi-row INSERT).
    for value in values:
        conn.execute(insert(_outbox), value)


def _row(found: Any) -> OutboxRow:
    return OutboxRow(found.id, found.event_id, json.loads(found.message), found.due_at)


def _claim(conn: Connection, installation: str, event_ids: Sequence[str] | None,
           limit: int) -> list[OutboxRow]:
    """The rows to send, locked or already deleted in this transaction, oldest first."""
    columns = (_c.id, _c.event_id, _c.message, _c.due_at)
    mine = _c.installation == installation
    oldest = select(_c.id).where(mine).order_by(_c.id).limit(limit)
    wheres: list[Any]
    if event_ids is None:
        wheres = [_c.id.in_(oldest.scalar_subquery())]
    else:
        wheres = [mine & _c.event_id.in_(list(event_ids[i:i + _CHUNK]))
                  for i in range(0, len(event_ids), _CHUNK)]
    found: list[OutboxRow] = []
    if conn.dialect.name == "sqlite":
        # A write first (one that changes nothing): it takes SQLite's one write
        # lock, so a second taker waits for this transaction, then finds the
        # rows gone. Deleting them here instead would lose them if the
        # application's engine autocommits and the transport then refused them.
        for where in wheres:
            touch = (update(_outbox).where(where).values(installation=_c.installation)
                     .returning(*columns))
            found += [_row(r) for r in conn.execute(touch)]
        return sorted(found, key=lambda row: row.id)
    # PostgreSQL, MariaDB/MySQL: lock the rows; another taker skips them.
    queries = ([select(*columns).where(mine).order_by(_c.id).limit(limit)]
               if event_ids is None else [select(*columns).where(where) for where in wheres])
    for query in queries:
        found += [_row(r) for r in conn.execute(query.with_for_update(skip_locked=True))]
    return sorted(found, key=lambda row: row.id)


def take_from_outbox(engine: Engine, installation: str,
                     send: Callable[[list[OutboxRow]], None], *,
                     event_ids: Sequence[str] | None = None, limit: int = 100) -> int:
    """Send rows of ``installation``'s outbox with ``send``, then delete them; return how many.

    ``event_ids``: those events' rows (the after-commit relay); otherwise the
    ``limit`` oldest rows (the sweep). Rows another taker holds are skipped.
    The rows stay locked while ``send`` runs; when it raises, the transaction
    is rolled back, the rows stay for the next try, and the error goes up.
    """
    with engine.begin() as conn:
        if event_ids is None and not outbox_table_exists(conn):
            return 0
        rows = _claim(conn, installation, event_ids, limit)
        if not rows:
            return 0
        send(rows)
        ids = [row.id for row in rows]
        by_id = delete(_outbox).where(_c.id.in_(bindparam("ids", expanding=True)))
        for i in range(0, len(ids), _CHUNK):
            conn.execute(by_id, {"ids": ids[i:i + _CHUNK]})
    return len(rows)


def _backend(url: URL) -> str:
    name = url.get_backend_name()
    return "mysql" if name == "mariadb" else name


_DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306}


def same_database(a: URL, b: URL) -> bool:
    """True when two URLs name the same database (drivers and users aside).

    Cautious: ``localhost`` and ``127.0.0.1`` count as different hosts, so a
    doubtful case answers False.
    """
    backend = _backend(a)
    if backend != _backend(b):
        return False
    if backend == "sqlite":
        files = [u.database for u in (a, b)]
        if any(not f or f == ":memory:" or f.startswith("file:") for f in files):
            return False
        return os.path.realpath(files[0] or "") == os.path.realpath(files[1] or "")
    port = _DEFAULT_PORTS.get(backend)
    return ((a.host or "").lower(), a.port or port, a.database) == (
        (b.host or "").lower(), b.port or port, b.database)


def parse_database_url(url: str) -> URL:
    """``url`` parsed, with our default drivers; a malformed one is a ``ConfigError``."""
    try:
        return make_url(normalize_url(url))
    except ArgumentError as exc:
        raise ConfigError(f"invalid database URL: {exc}") from None


def outbox_engine(url: str) -> Engine:
    """An engine for the sweep over the outbox of the database at ``url``.

    It leaves that database's settings alone (no WAL switch on an
    application's SQLite file); a SQLite writer waits up to 30 s for another.
    """
    try:
        parsed = parse_database_url(url)
    except ConfigError as exc:
        raise ConfigError(f"ASYNCEVENTS_OUTBOX_URL: {exc}") from None
    options: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        options["connect_args"] = {"timeout": 30.0, "check_same_thread": False}
    else:
        options["pool_pre_ping"] = True
    try:
        return create_engine(parsed, **options)
    except (ArgumentError, ImportError) as exc:
        raise ConfigError(f"cannot use ASYNCEVENTS_OUTBOX_URL "
                          f"{parsed.render_as_string()}: {exc}") from None
