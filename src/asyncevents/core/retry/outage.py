"""Riding out a short outage of the database or the broker, and telling one from a
setting that waiting will not fix (a refused password, an unknown virtual host, a
database that does not exist), which is raised at once as a ``ConfigError``.

:class:`OutageLog` keeps an outage to two lines in the log: a warning when it
starts, and one line with its duration when it ends.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import structlog

from asyncevents.errors import ConfigError, StoreError, TransportError

__all__ = ["OutageLog", "misconfiguration", "through_outage"]

# What servers answer when the settings, not the network, are wrong.
_MISCONFIGURED = (
    "ACCESS_REFUSED",                   # RabbitMQ: wrong user or password
    "NOT_ALLOWED",                      # RabbitMQ: unknown vhost, or no access to it
    "password authentication failed",   # PostgreSQL
    "no pg_hba.conf entry",
    "does not exist",                   # PostgreSQL: database or role
    "Access denied for user",           # MySQL/MariaDB (1044, 1045)
    "Unknown database",                 # MySQL/MariaDB (1049)
    "unable to open database file",     # SQLite: no such directory
)


def misconfiguration(exc: BaseException) -> str | None:
    """The first line of ``exc`` when it says the settings are wrong, else None."""
    text = str(exc)
    if not any(marker in text for marker in _MISCONFIGURED):
        return None
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__

_T = TypeVar("_T")


def through_outage(work: Callable[[], _T], *, patience: float, first: float, longest: float,
                   on_retry: Callable[[Exception, float], None]) -> _T:
    """Run ``work``, retrying on ``StoreError``/``TransportError`` for up to ``patience`` s.

    Waits ``first`` seconds after the first failure, doubling up to
    ``longest``; ``on_retry(error, wait)`` is told before each wait. Once the
    next wait would pass ``patience``, the error goes up.
    """
    wait, deadline = first, time.monotonic() + patience
    while True:
        try:
            return work()
        except (StoreError, TransportError) as exc:
            wrong = misconfiguration(exc)
            if wrong is not None:
                raise ConfigError(f"{wrong} (check the settings: waiting will not help)") from None
            if time.monotonic() + wait > deadline:
                raise
            on_retry(exc, wait)
            time.sleep(wait)
            wait = min(wait * 2, longest)


class OutageLog:
    """One warning when an outage of ``what`` starts, one line when it ends.

    ``failed(error)`` at the first failure logs ``"store unreachable
    (StoreError: ...)"``; later failures are only counted. The next
    ``recovered()`` logs ``"store back after 5.2 s (61 messages requeued)"``,
    with ``down_for`` and the count as fields. ``counted`` names what a
    failure's ``count`` counts; ``lost``/``back`` replace the two phrases
    (the worker's broker lines keep their words: ``broker connection lost,
    reconnecting`` and ``broker connection restored``).

    Thread-safe: the engine's loop, its I/O threads and the worker's
    housekeeping report to the same log. A success that began before the
    outage did (``recovered(began=...)``, a ``time.monotonic()``) does not end
    it: a batch that was already past the store when it went away proves
    nothing about the store now.
    """

    def __init__(self, what: str, *, counted: str = "messages requeued",
                 lost: str | None = None, back: str | None = None,
                 logger: Any = None) -> None:
        self.what = what
        self.counted = counted
        self.lost = lost or f"{what} unreachable"
        self.back = back or f"{what} back"
        self._log = logger or structlog.get_logger("asyncevents.worker")
        self._lock = threading.Lock()
        self._since: float | None = None
        self._count = 0
        #: Outages seen so far, and failures within them (for tests and reports).
        self.outages = 0
        self.failures = 0

    @property
    def down(self) -> bool:
        """True from a failure until the next success."""
        return self._since is not None

    def failed(self, error: BaseException | str, *, count: int = 1, **fields: Any) -> bool:
        """Count a failure; the first of an outage logs a warning. True when it was the first."""
        with self._lock:  # logged inside: the start's line always comes before the end's
            self.failures += 1
            self._count += count
            if self._since is not None:
                return False
            self._since = time.monotonic()
            self.outages += 1
            text = error if isinstance(error, str) else _describe(error)
            self._log.warning(f"{self.lost} ({text})", outage=self.what, **fields)
            return True

    def recovered(self, *, began: float | None = None, **fields: Any) -> float | None:
        """A success: end the outage, if any, with one line; its duration (seconds) or None.

        ``began``: when the successful work started (``time.monotonic()``);
        work that started before the outage did not end it.
        """
        with self._lock:
            since = self._since
            if since is None or (began is not None and began < since):
                return None
            count, self._since, self._count = self._count, None, 0
            down_for = time.monotonic() - since
            self._log.warning(f"{self.back} after {down_for:.1f} s ({count} {self.counted})",
                              outage=self.what, down_for=round(down_for, 1),
                              **{self.counted.replace(" ", "_"): count}, **fields)
            return down_for


def _describe(exc: BaseException) -> str:
    """``Type: first line`` of an error (SQLAlchemy adds lines of background)."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
