"""Engines from URLs: default drivers, SQLite tuned for several processes and private files."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, DisconnectionError
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

from asyncevents.errors import ConfigError

__all__ = [
    "DEFAULT_DRIVERS",
    "make_engine",
    "normalize_url",
    "private_sqlite_file",
    "run",
    "sqlite_path",
    "sqlite_pragmas",
]

_T = TypeVar("_T")

#: The drivers asyncevents installs (psycopg 3 and PyMySQL, not psycopg2 or
#: mysqlclient), for URLs that name none; the store and the SQL queue share it.
DEFAULT_DRIVERS = {"postgresql": "postgresql+psycopg", "postgres": "postgresql+psycopg",
                   "mysql": "mysql+pymysql", "mariadb": "mariadb+pymysql"}


def normalize_url(url: str) -> str:
    """Pick the installed driver when the URL names none."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ConfigError(f"invalid database URL {url!r}: expected scheme://...")
    return f"{DEFAULT_DRIVERS.get(scheme, scheme)}://{rest}"


def sqlite_path(database_url: str) -> Path | None:
    """The database file of a SQLite URL; ``None`` for another database or one in memory."""
    try:
        url = make_url(database_url)
    except ArgumentError:
        return None
    if url.get_backend_name() != "sqlite":
        return None
    database = url.database or ""
    if database.startswith("file:"):  # a URI filename (?uri=true)
        if "mode=memory" in database or "mode=memory" in str(url.query):
            return None
        database = database[len("file:"):].split("?", 1)[0]
    if database in ("", ":memory:"):
        return None
    return Path(database)


def private_sqlite_file(database_url: str) -> None:
    """Create the SQLite file of ``database_url``, readable by its owner only (0600).

    Before SQLite does, with the umask's mode (often 0644): the store holds
    encrypted secrets and payloads, the queue payloads. SQLite gives its
    ``-wal`` and ``-shm`` files the database file's mode. A file that exists
    is left as it is; one that cannot be made is left to SQLite's own error.
    """
    path = sqlite_path(database_url)
    if path is None:
        return
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError:  # it exists (or SQLite will say why it cannot be made)
        return
    try:
        os.fchmod(descriptor, 0o600)  # whatever the umask
    finally:
        os.close(descriptor)


def sqlite_pragmas(synchronous: str = "NORMAL") -> tuple[str, ...]:
    """The statements every SQLite connection of asyncevents starts with.

    WAL lets readers work while a writer writes (the CLI beside a worker, a
    worker beside a publisher); busy_timeout makes writers wait for each
    other instead of failing with "database is locked". ``synchronous``:
    ``FULL`` where a commit must survive a power cut, else ``NORMAL``.
    """
    # busy_timeout first: switching to WAL needs a lock another process may hold.
    return ("PRAGMA busy_timeout=30000", "PRAGMA journal_mode=WAL",
            f"PRAGMA synchronous={synchronous}")


def _sqlite_pragmas(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    for statement in sqlite_pragmas():
        cursor.execute(statement)
    cursor.close()


#: A pooled connection back in the pool for longer than this (seconds) is
#: pinged before use. One used just before is trusted: under load that saves
#: a round trip per transaction, and if the server went away in between the
#: transaction fails once and its caller's retry gets a fresh connection.
PING_AFTER_IDLE = 1.0


def _on_checkin(_dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
    record.info["idle_since"] = time.monotonic()


def _ping_if_idle(dbapi_connection: Any, record: ConnectionPoolEntry,
                  _proxy: PoolProxiedConnection) -> None:
    since = record.info.get("idle_since")
    if since is not None and time.monotonic() - since < PING_AFTER_IDLE:
        return
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("SELECT 1")
    except Exception as exc:
        # The pool drops this connection and checks out (or opens) another.
        raise DisconnectionError(str(exc)) from exc
    finally:
        with contextlib.suppress(Exception):  # discarded anyway when it failed
            cursor.close()


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url``; a malformed URL is a ``ConfigError``."""
    try:
        parsed = make_url(normalize_url(url))
    except ArgumentError as exc:
        raise ConfigError(f"invalid database URL: {exc}") from None
    options: dict[str, Any] = dict(kwargs)
    if parsed.get_backend_name() == "sqlite":
        options.setdefault("connect_args", {})["check_same_thread"] = False
        private_sqlite_file(parsed.render_as_string(hide_password=False))
    else:
        # Every worker thread holds a connection at times: a pool smaller than
        # that opens and closes overflow connections all day long.
        options.setdefault("pool_size", 20)
        options.setdefault("max_overflow", 20)
    try:
        engine = create_engine(parsed, **options)
    except (ArgumentError, ImportError) as exc:
        raise ConfigError(f"cannot use database URL {parsed.render_as_string()}: {exc}") from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    elif not options.get("pool_pre_ping"):
        # A server restart leaves dead pooled connections: ping the ones that
        # sat idle before handing them out (pool_pre_ping pings every one).
        # A SQLite file has no connection to lose.
        event.listen(engine.pool, "checkout", _ping_if_idle)
        event.listen(engine.pool, "checkin", _on_checkin)
    return engine


def run(engine: Engine, work: Callable[[Connection], _T]) -> _T:
    """``work`` in one transaction, retried once if the pooled connection was dead.

    For engines without the store's ping (the SQL queue's): this stands in for
    ``pool_pre_ping``, which costs a round trip per operation. A statement
    sent on a dead connection never ran, except when the connection died
    after the server got it: then the retry may repeat it, which is what a
    caller's own retry would do.
    """
    try:
        with engine.begin() as conn:
            return work(conn)
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
    with engine.begin() as conn:
        return work(conn)
