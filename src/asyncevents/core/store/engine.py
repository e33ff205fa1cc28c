"""Engines from URLs: default drivers, SQLite tuned for several processes."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import ConnectionPoolEntry

from asyncevents.errors import ConfigError

__all__ = ["make_engine", "normalize_url"]

# The drivers asyncevents installs: psycopg 3 and PyMySQL, not psycopg2/mysqlclient.
_DEFAULT_DRIVERS = {"postgresql": "postgresql+psycopg", "mysql": "mysql+pymysql",
                    "mariadb": "mariadb+pymysql"}


def normalize_url(url: str) -> str:
    """Pick the installed driver when the URL names none."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ConfigError(f"invalid database URL {url!r}: expected scheme://...")
    return f"{_DEFAULT_DRIVERS.get(scheme, scheme)}://{rest}"


def _sqlite_pragmas(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    # WAL lets the CLI read while a worker writes; busy_timeout makes writers
    # wait for each other instead of failing with "database is locked".
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
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
    else:
        # A server restart leaves dead pooled connections; the ping finds them
        # before a query fails. A SQLite file has no connection to lose.
        options.setdefault("pool_pre_ping", True)
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
    return engine
