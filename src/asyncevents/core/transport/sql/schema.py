"""The queue table behind :mod:`asyncevents.core.sqltransport`, its SQL and its engines.

One row per message that is ready or leased; acked rows are deleted, so the
table stays as small as the backlog. A row is ready when ``visible_at`` has
passed; a claim moves ``visible_at`` to the end of the lease and bumps
``deliveries``, which doubles as the lease's token, and names the holder in
``leased_by`` (the worker's presence id; NULL for a consumer without one).
A worker reclaims the leases of holders whose presence heartbeat stopped
(:func:`reclaim`): those rows are due again at once, not at the end of
their lease. A table made before ``leased_by`` existed gets the column on
first use (:func:`get_engines`).

Every job gets the engine that suits it (:class:`QueueEngines`): publishing
always waits for a durable commit; claims and acks on PostgreSQL and SQLite do
not wait for the disk, since losing one in a database crash only means a
redelivery. Single statements run in autocommit (no ``BEGIN``/``COMMIT``
round trips), except on SQLite, where every transaction is ``BEGIN
IMMEDIATE``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Index,
    Integer,
    MetaData,
    Select,
    String,
    Table,
    Update,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError

from asyncevents.core.clock import naive_utcnow as utcnow
from asyncevents.core.store.columns import LONG_TEXT, MICRO_TIME, ROW_ID
from asyncevents.core.store.engine import (
    DEFAULT_DRIVERS,
    private_sqlite_file,
    run,
    sqlite_pragmas,
)
from asyncevents.core.store.schema import workers

__all__ = [
    "TABLE_NAME",
    "QueueEngines",
    "beating_since",
    "dispose_engines",
    "engine_url",
    "get_engines",
    "messages",
    "metadata",
    "orphaned",
    "reclaim",
    "run",
    "silent_since",
    "utcnow",
]


#: The queue table's name.
TABLE_NAME = "asyncevents_queue_message"

#: The metadata holding only :data:`messages`.
metadata = MetaData()
#: The SQLAlchemy Core table behind every queue.
messages = Table(
    TABLE_NAME,
    metadata,
    Column("id", ROW_ID, primary_key=True,
           autoincrement=True),
    Column("queue", String(200), nullable=False),
    Column("payload", LONG_TEXT,
           nullable=False),
    Column("created_at", MICRO_TIME, nullable=False),
    Column("visible_at", MICRO_TIME, nullable=False),
    Column("deliveries", Integer, nullable=False),
    # The presence id of the worker holding the lease (NULL: a consumer without one).
    Column("leased_by", String(36), nullable=True),
    Index(f"ix_{TABLE_NAME}_ready", "queue", "visible_at", "id"),
    # Never reuse an id: a stale lease token must not match a newer row.
    sqlite_autoincrement=True,
    mysql_charset="utf8mb4",
)

_c = messages.c
PUT = insert(messages)
#: The PostgreSQL channel a publish notifies, so idle consumers wake at once.
NOTIFY_CHANNEL = "asyncevents_queue"
_PUT_ROW = (
    insert(messages)
    .values(queue=bindparam("queue"), payload=bindparam("payload"),
            created_at=bindparam("created_at"), visible_at=bindparam("visible_at"),
            deliveries=bindparam("deliveries"))
    .returning(_c.queue)
    .cte("put")
)
# PostgreSQL: insert and NOTIFY in one statement (one round trip).
PUT_AND_NOTIFY = select(func.pg_notify(NOTIFY_CHANNEL, _PUT_ROW.c.queue)).select_from(_PUT_ROW)
# PostgreSQL: a NOTIFY for a batch of rows inserted together.
NOTIFY = select(func.pg_notify(NOTIFY_CHANNEL, bindparam("q", type_=String)))
PICK = (
    select(_c.id, _c.payload, _c.deliveries)
    .where(_c.queue == bindparam("q"), _c.visible_at <= bindparam("now"))
    .order_by(_c.visible_at, _c.id)
    .limit(bindparam("k", type_=Integer))
    .with_for_update(skip_locked=True)
)
# Claim up to ``k`` rows in one statement on PostgreSQL and SQLite; MariaDB has
# no UPDATE ... RETURNING, so there it is PICK then LEASE in a transaction.
CLAIM = (
    update(messages)
    .where(_c.id.in_(PICK.with_only_columns(_c.id).scalar_subquery()))
    .values(visible_at=bindparam("until"), deliveries=_c.deliveries + 1,
            leased_by=bindparam("by", type_=String))
    .returning(_c.id, _c.payload, _c.deliveries)
)
LEASE = (
    update(messages)
    .where(_c.id.in_(bindparam("ids", expanding=True)))
    .values(visible_at=bindparam("until"), deliveries=_c.deliveries + 1,
            leased_by=bindparam("by", type_=String))
)
_OWNED = (_c.id == bindparam("rid")) & (_c.deliveries == bindparam("n"))
SETTLE = delete(messages).where(_OWNED)
# A holder still at work extends its lease.
RENEW = update(messages).where(_OWNED).values(visible_at=bindparam("until"))
RELEASE = update(messages).where(_OWNED).values(visible_at=_c.created_at)
# A claimed row that was never delivered: as if it had not been claimed.
UNCLAIM = (
    update(messages).where(_OWNED)
    .values(visible_at=_c.created_at, deliveries=_c.deliveries - 1)
)
_READY = (_c.queue == bindparam("q")) & (_c.visible_at <= bindparam("now"))
SIZE = select(func.count()).select_from(messages).where(_READY)
PURGE = delete(messages).where(_READY)
DELETE_QUEUE = delete(messages).where(_c.queue == bindparam("q"))
# The earliest delayed row (never delivered, not visible yet) of some queues.
NEXT_DUE = select(func.min(_c.visible_at)).where(
    _c.queue.in_(bindparam("qs", expanding=True)), _c.deliveries == 0,
    _c.visible_at > bindparam("now"))

#: Holders (workers' presence ids), either as a query of the workers table (in
#: the queue's database) or as a list of ids (the store is another database).
Holders = Select[str] | Sequence[str]


def silent_since(before: datetime) -> Select[str]:
    """The workers whose last heartbeat is older than ``before`` (aware UTC)."""
    return select(workers.c.id).where(workers.c.heartbeat_at < before)


def beating_since(since: datetime) -> Select[str]:
    """The workers that beat at ``since`` (aware UTC) or later."""
    return select(workers.c.id).where(workers.c.heartbeat_at >= since)


def _leased(queues: Sequence[str], now: datetime) -> list[Any]:
    return [_c.queue.in_(list(queues)), _c.deliveries > 0, _c.visible_at > now]


def reclaim(queue: str, now: datetime, silent: Holders) -> Update:
    """Make the rows of ``queue`` leased by ``silent`` holders due again, in their first place.

    The lease is over at once (``visible_at`` back to ``created_at``, as a
    requeue leaves it); the token (``deliveries``) stays, so the silent
    holder can neither ack nor renew it should it wake up.
    """
    return (update(messages).where(*_leased([queue], now), _c.leased_by.in_(silent))
            .values(visible_at=_c.created_at))


def orphaned(queues: Sequence[str], now: datetime, me: str | None,
             alive: Holders) -> Select[int]:
    """Count the rows of ``queues`` leased by a holder that is neither ``me`` nor ``alive``.

    Rows leased by no known holder (NULL) are not counted: nothing says when
    such a holder is gone, and their lease ends by itself.
    """
    wheres = [*_leased(queues, now), _c.leased_by.is_not(None), _c.leased_by.not_in(alive)]
    if me is not None:
        wheres.append(_c.leased_by != me)
    return select(func.count()).select_from(messages).where(*wheres)



@dataclass(frozen=True)
class QueueEngines:
    """The engines of one database, by job (the same engine may do several)."""

    put: Engine
    """Publish, purge, delete: commits wait for the disk."""
    claim: Engine
    """Claims; a transaction where ``claim_in_one_statement`` is false."""
    settle: Engine
    """Acks and requeues."""
    claim_in_one_statement: bool
    """True where ``CLAIM`` works (``UPDATE ... RETURNING``)."""
    notify: bool = False
    """True on PostgreSQL: a publish sends NOTIFY on :data:`NOTIFY_CHANNEL`."""

    def all(self) -> set[Engine]:
        """The distinct engines."""
        return {self.put, self.claim, self.settle}


_ENGINES: dict[tuple[int, str, str], QueueEngines] = {}
_ENGINES_LOCK = threading.Lock()


def engine_url(url: str) -> URL:
    """The SQLAlchemy URL for ``url`` (without ``sqla+``), with our default drivers."""
    parsed = make_url(url)
    driver = DEFAULT_DRIVERS.get(parsed.drivername)
    return parsed.set(drivername=driver) if driver else parsed


def _on_connect(engine: Engine, *statements: str) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        if engine.dialect.name == "sqlite":
            dbapi_conn.isolation_level = None  # we send BEGIN ourselves
        cursor = dbapi_conn.cursor()
        for statement in statements:
            cursor.execute(statement)
        cursor.close()
        if engine.dialect.name != "sqlite":
            dbapi_conn.commit()


def _sqlite_engine(url: URL, options: dict[str, Any], synchronous: str) -> Engine:
    engine = create_engine(url, **options)
    _on_connect(engine, *sqlite_pragmas(synchronous))

    # pysqlite's deferred BEGIN lets a claim read a snapshot and then fail to
    # upgrade to a write lock; take the write lock up front.
    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _build(url: URL, options: dict[str, Any]) -> QueueEngines:
    backend = url.get_backend_name()
    if backend == "sqlite":
        if url.database in (None, "", ":memory:"):
            raise ValueError("an in-memory SQLite database cannot be a shared queue; use a file")
        private_sqlite_file(url.render_as_string(hide_password=False))  # payloads: 0600
        durable = _sqlite_engine(url, options, "FULL")
        fast = _sqlite_engine(url, options, "NORMAL")
        return QueueEngines(durable, fast, fast, claim_in_one_statement=True)
    autocommit = {"isolation_level": "AUTOCOMMIT", **options}
    if backend == "postgresql":
        fast = create_engine(url, **autocommit)
        _on_connect(fast, "SET synchronous_commit TO off")
        return QueueEngines(create_engine(url, **autocommit), fast, fast,
                            claim_in_one_statement=True, notify=True)
    if backend in ("mysql", "mariadb"):
        durable = create_engine(url, **autocommit)
        # READ COMMITTED: no gap locks from the claim blocking inserts.
        claim = create_engine(url, **{"isolation_level": "READ COMMITTED", **options})
        return QueueEngines(durable, claim, durable, claim_in_one_statement=False)
    engine = create_engine(url, **options)
    return QueueEngines(engine, engine, engine, claim_in_one_statement=False)


def _create_table(engine: Engine) -> None:
    try:
        metadata.create_all(engine, checkfirst=True)
    except DBAPIError:
        # Another process created it between our check and our CREATE.
        metadata.create_all(engine, checkfirst=True)
    _add_leased_by(engine)


def _add_leased_by(engine: Engine) -> None:
    """Give a table made by an older asyncevents its ``leased_by`` column."""
    def missing() -> bool:
        with engine.connect() as conn:
            columns = inspect(conn).get_columns(TABLE_NAME)
        return "leased_by" not in {column["name"] for column in columns}

    if not missing():
        return
    try:
        with engine.begin() as conn:
            conn.execute(text(f"ALTER TABLE {TABLE_NAME} ADD COLUMN leased_by VARCHAR(36)"))
    except DBAPIError:
        if missing():  # else another process added it between our look and our ALTER
            raise


def get_engines(url: str, engine_options: dict[str, Any] | None = None) -> QueueEngines:
    """This process's engines for ``url``; the queue table is created on first use.

    ``engine_options`` go to every ``create_engine`` call.
    """
    sa_url = engine_url(url)
    options = dict(engine_options or {})
    key = (os.getpid(), sa_url.render_as_string(hide_password=False), repr(sorted(options.items())))
    engines = _ENGINES.get(key)
    if engines is None:
        with _ENGINES_LOCK:
            engines = _ENGINES.get(key)
            if engines is None:
                engines = _build(sa_url, options)
                _create_table(engines.put)
                _ENGINES[key] = engines
    return engines


def dispose_engines() -> None:
    """Close and forget every cached engine (tests; a forked child gets its own anyway)."""
    with _ENGINES_LOCK:
        cached = list(_ENGINES.items())
        _ENGINES.clear()
    for (pid, _, _), engines in cached:
        for engine in engines.all():
            # Connections inherited through fork belong to the parent: just drop them.
            engine.dispose(close=pid == os.getpid())
