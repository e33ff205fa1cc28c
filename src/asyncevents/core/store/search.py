"""Running compiled searches: a page of matching deliveries, newest first, or their count.

The WHERE clause comes from :mod:`asyncevents.core.search.sql`; this module
only orders, pages and runs it, each statement under a time limit
(:data:`SEARCH_TIMEOUT`, see :func:`time_limited`): a query over large
payloads cannot hold a connection and a CPU for minutes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, func, or_, select
from sqlalchemy.exc import DBAPIError

from asyncevents.core.models import Delivery
from asyncevents.core.store.base import StoreBase
from asyncevents.core.store.deliveries import delivery_from_row
from asyncevents.core.store.schema import deliveries
from asyncevents.errors import InvalidQuery

__all__ = ["SEARCH_TIMEOUT", "SearchQueries", "time_limited"]

#: Seconds one search statement may run before the database stops it.
SEARCH_TIMEOUT = 10.0
# SQLite calls the progress handler every this many virtual machine instructions.
_SQLITE_STEPS = 1000
# PostgreSQL's query_canceled; MariaDB's and MySQL's statement time-outs.
_PG_CANCELED = "57014"
_MYSQL_TIMEOUTS = frozenset({1969, 3024})


def _timed_out(exc: DBAPIError) -> bool:
    orig: Any = exc.orig
    if getattr(orig, "sqlstate", None) == _PG_CANCELED:
        return True
    args = getattr(orig, "args", ())
    if args and args[0] in _MYSQL_TIMEOUTS:
        return True
    return type(orig).__module__ == "sqlite3" and str(orig) == "interrupted"


@contextmanager
def time_limited(conn: Connection, seconds: float | None = None) -> Iterator[None]:
    """Statements run in ``conn`` inside the block stop after ``seconds`` (default
    :data:`SEARCH_TIMEOUT`); one that does raises :class:`InvalidQuery` (one line).

    PostgreSQL: ``SET LOCAL statement_timeout`` (the transaction's own).
    MariaDB: the session's ``max_statement_time``, MySQL: its
    ``MAX_EXECUTION_TIME``, both put back to the server's default afterwards.
    SQLite: a progress handler that interrupts the statement once the time is up.
    """
    limit = SEARCH_TIMEOUT if seconds is None else seconds
    dialect = conn.dialect
    reset: str | None = None
    raw: Any = None
    if dialect.name == "postgresql":
        conn.exec_driver_sql(f"SET LOCAL statement_timeout = {max(1, round(limit * 1000))}")
    elif dialect.name in ("mysql", "mariadb"):
        if getattr(dialect, "is_mariadb", False):
            conn.exec_driver_sql(f"SET SESSION max_statement_time = {max(0.001, limit):.3f}")
            reset = "SET SESSION max_statement_time = DEFAULT"
        else:
            conn.exec_driver_sql(f"SET SESSION MAX_EXECUTION_TIME = {max(1, round(limit * 1000))}")
            reset = "SET SESSION MAX_EXECUTION_TIME = DEFAULT"
    elif dialect.name == "sqlite":
        raw = conn.connection.driver_connection
        deadline = time.monotonic() + limit
        raw.set_progress_handler(lambda: int(time.monotonic() > deadline), _SQLITE_STEPS)
    try:
        yield
    except DBAPIError as exc:
        if _timed_out(exc):
            raise InvalidQuery(
                f"the search ran longer than {limit:g} s and was stopped: narrow the query "
                "(fewer terms or wildcards, a created:[... TO ...] range)"
            ) from None
        raise
    finally:
        if raw is not None:
            raw.set_progress_handler(None, 0)
        if reset is not None:
            try:
                conn.exec_driver_sql(reset)
            except DBAPIError:
                conn.invalidate()  # never hand the limit on to the pool's next user


def _before(position: tuple[datetime, str]) -> ColumnElement[bool]:
    created, delivery_id = position
    col = deliveries.c
    return or_(col.created_at < created, and_(col.created_at == created, col.id < delivery_id))


class SearchQueries(StoreBase):
    """Searches over the store's deliveries."""

    def search_page(self, where: ColumnElement[bool], *, limit: int,
                    before: tuple[datetime, str] | None = None) -> list[Delivery]:
        """Up to ``limit`` deliveries matching ``where``, newest first.

        With ``before`` (a delivery's created time and uuid), only those that
        come after it in that order: a keyset page, which newer rows never shift.
        """
        query = select(deliveries).where(where)
        if before is not None:
            query = query.where(_before(before))
        query = query.order_by(deliveries.c.created_at.desc(),
                               deliveries.c.id.desc()).limit(limit)
        with self.begin() as conn, time_limited(conn):
            return [delivery_from_row(row) for row in conn.execute(query).mappings()]

    def count_matching(self, where: ColumnElement[bool]) -> int:
        """How many deliveries match ``where``."""
        query = select(func.count()).select_from(deliveries).where(where)
        with self.begin() as conn, time_limited(conn):
            return int(conn.execute(query).scalar_one())
