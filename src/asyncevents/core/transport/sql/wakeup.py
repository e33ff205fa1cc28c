"""Waking idle SQL-transport consumers at once on PostgreSQL (LISTEN/NOTIFY).

A consumer of an empty queue polls it every ``polling_interval``; a message
published just after a poll waits for the next one. On PostgreSQL each
publish also sends ``NOTIFY asyncevents_queue`` (in the same statement as the
insert), and a consumer waits on a ``LISTEN`` connection instead of sleeping:
it is woken as soon as a message is committed. The polls stay, as a safety
net for what sends no notification (a lease running out, a requeue) and for
a listening connection that was lost: then the consumer just sleeps between
polls and tries to listen again a few seconds later.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import structlog
from sqlalchemy import Engine

__all__ = ["Wakeup"]

log = structlog.get_logger("asyncevents.sqltransport")

# Seconds before listening again after the listening connection failed.
_RETRY_AFTER = 5.0


class Wakeup:
    """A ``LISTEN`` connection on ``channel``: :meth:`wait` returns early on a NOTIFY."""

    def __init__(self, engine: Engine, channel: str) -> None:
        self._engine = engine
        self._channel = channel
        self._conn: Any = None
        self._retry_at = 0.0

    def _listening(self) -> Any:
        if self._conn is not None or time.monotonic() < self._retry_at:
            return self._conn
        try:
            pooled = self._engine.raw_connection()
            conn: Any = pooled.driver_connection  # psycopg's Connection
            pooled.detach()  # ours for good: it must not go back to the pool listening
            conn.autocommit = True
            conn.execute(f"LISTEN {self._channel}")
        except Exception as exc:
            self._failed(exc)
            return None
        self._conn = conn
        return conn

    def _failed(self, exc: Exception) -> None:
        self.close()
        self._retry_at = time.monotonic() + _RETRY_AFTER
        log.info("cannot listen for new messages, polling only", error=type(exc).__name__,
                 retry_in=_RETRY_AFTER)

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds; True if woken by a notification."""
        conn = self._listening()
        if conn is None:
            time.sleep(timeout)
            return False
        try:
            woken = any(True for _ in conn.notifies(timeout=timeout, stop_after=1))
            if woken:  # the others that came meanwhile say nothing more
                for _ in conn.notifies(timeout=0):
                    pass
        except Exception as exc:
            self._failed(exc)
            return False
        return woken

    def close(self) -> None:
        """Close the listening connection."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()
