"""Riding out a short outage of the database or the broker, and telling one from a
setting that waiting will not fix (a refused password, an unknown virtual host, a
database that does not exist), which is raised at once as a ``ConfigError``."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from asyncevents.errors import ConfigError, StoreError, TransportError

__all__ = ["misconfiguration", "through_outage"]

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
