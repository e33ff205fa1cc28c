"""Retries: how long each wait is (the policy), and who holds the message meanwhile.

:class:`RetryPolicy` says how many deaths a delivery may have and how long
each wait is. :class:`RetryManagement` is the hook interface (Magento's
RetryManagementInterface) that puts a message back in line after its wait;
the ``retry_management`` hook picks the implementation. The core ships two,
registered ``trylast`` so a plugin can win:

- :class:`TransportDelays`: the transport holds the message itself (RabbitMQ
  TTL queues, a future ``visible_at`` on the SQL queue).
- :class:`DatabaseSchedule`: rows in the store, published by the worker's
  pump when due: for transports with no delays of their own.

:func:`retry_management` is the core's ``trylast`` implementation of the hook.

And the core's own retries: :func:`through_outage` rides out a short outage
of the database or the broker; :func:`misconfiguration` tells one from a
setting that waiting will not fix (a refused password, an unknown virtual
host, a database that does not exist), which is raised at once as a
``ConfigError``.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from asyncevents.core.clock import utcnow
from asyncevents.core.hookspecs import hookimpl
from asyncevents.core.messages import MalformedMessage, Message, as_route, decode
from asyncevents.core.settings import Backoff, Settings
from asyncevents.core.store import Schedule
from asyncevents.errors import ConfigError, StoreError, TransportError

if TYPE_CHECKING:
    from asyncevents.core.store import Store
    from asyncevents.core.transport import Transport

__all__ = [
    "DatabaseSchedule",
    "RetryManagement",
    "RetryPolicy",
    "TransportDelays",
    "misconfiguration",
    "retry_management",
    "through_outage",
]

log = structlog.get_logger("asyncevents.retry")


class RetryPolicy(BaseModel):
    """Global retry settings, overridable per subscription.

    The default reproduces Magento's ``min(60, deaths²)``: retries after 1, 4,
    9, 16 and 25 seconds, then the delivery is dead.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_deaths: int = Field(default=5, ge=0)
    backoff: Backoff = "quadratic"
    base: float = Field(default=1.0, gt=0)
    max_backoff: float = Field(default=60.0, gt=0)
    jitter: float = Field(default=0.0, ge=0, le=1)
    max_age: float | None = Field(default=None, gt=0)

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        """The global policy."""
        return cls(
            max_deaths=settings.max_deaths, backoff=settings.backoff, base=settings.backoff_base,
            max_backoff=settings.max_backoff, jitter=settings.jitter, max_age=settings.max_age,
        )

    def override(self, overrides: dict[str, Any] | None) -> RetryPolicy:
        """This policy with a subscription's overrides applied."""
        if not overrides:
            return self
        return self.model_validate({**self.model_dump(), **overrides})

    @classmethod
    def check_overrides(cls, overrides: dict[str, Any]) -> dict[str, Any]:
        """Validate a subscription's overrides; a ``ConfigError`` names the bad field."""
        try:
            cls.model_validate(overrides)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ConfigError(f"invalid retry policy field {where!r}: {first['msg']}") from None
        return overrides

    def delay(self, deaths: int) -> float:
        """Seconds to wait after the ``deaths``-th failure (1-based)."""
        n = max(deaths, 1)
        if self.backoff == "quadratic":
            raw = self.base * n * n
        elif self.backoff == "exponential":
            raw = self.base * 2.0 ** min(n - 1, 60)
        elif self.backoff == "linear":
            raw = self.base * n
        else:
            raw = self.base
        wait = min(self.max_backoff, raw)
        if self.jitter:
            # Subtractive jitter keeps max_backoff a true ceiling.
            wait -= wait * self.jitter * random.random()
        return wait

    def gives_up(self, deaths: int, age_seconds: float) -> bool:
        """True when a delivery with ``deaths`` failures and this age must die."""
        if deaths > self.max_deaths:
            return True
        return self.max_age is not None and age_seconds >= self.max_age


@runtime_checkable
class RetryManagement(Protocol):
    """Puts a message back on its route no earlier than ``delay`` seconds from now."""

    def schedule(self, message: Message, delay: float) -> None:
        """Hold ``message`` for ``delay`` seconds, then send it on ``message.route``."""

    def pump(self) -> int:
        """Send what is due (the worker calls it often); return how many."""

    def seconds_until_due(self) -> float | None:
        """Seconds until the next held message is due, or None when none is known."""

    def close(self) -> None:
        """Release resources."""


class TransportDelays:
    """The transport's own delays (``transport.native_delays``)."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        # What this process parked: enough for --max-idle-time to wait for its
        # own retries where the transport cannot tell (RabbitMQ).
        self._due: list[float] = []

    def schedule(self, message: Message, delay: float) -> None:
        """Enqueue ``message`` with ``delay``."""
        self.transport.enqueue(message, delay=max(0.0, delay))
        if delay > 0:
            self._due.append(time.monotonic() + delay)

    def pump(self) -> int:
        """The transport moves due messages itself."""
        now = time.monotonic()
        self._due = [t for t in self._due if t > now]
        return 0

    def seconds_until_due(self) -> float | None:
        """The transport's answer, or else when the next message parked here comes back."""
        self.pump()
        candidates = [max(0.0, min(self._due) - time.monotonic())] if self._due else []
        told = self.transport.seconds_until_due()
        if told is not None:
            candidates.append(told)
        return min(candidates) if candidates else None

    def close(self) -> None:
        """Nothing to release: the transport owns its connections."""


class DatabaseSchedule:
    """A schedule table in the store, for transports with no delays of their own."""

    batch = 100
    lease = timedelta(seconds=30)

    def __init__(self, transport: Transport, store: Store) -> None:
        self.transport = transport
        self.store = store
        self.rows = Schedule(store)

    def schedule(self, message: Message, delay: float) -> None:
        """Hold ``message`` in the store; send it now when there is no delay."""
        if delay <= 0:
            self.transport.enqueue(message)
            return
        due = utcnow() + timedelta(seconds=delay)
        self.rows.add(message.route, json.dumps(message.body()), due)

    def pump(self) -> int:
        """Send every due row, then delete it."""
        rows = self.rows.claim(self.batch, self.lease)
        done: list[int] = []
        try:
            for row_id, route, body in rows:
                try:
                    message = decode(as_route(route), json.loads(body))
                except (MalformedMessage, ValueError) as exc:
                    log.error("malformed scheduled message dropped", problem=str(exc),
                              body=body[:200])
                else:
                    self.transport.enqueue(message)
                done.append(row_id)
        finally:
            self.rows.delete(done)
        return len(done)

    def seconds_until_due(self) -> float | None:
        """Seconds until the earliest row is due."""
        earliest = self.rows.next_due()
        if earliest is None:
            return None
        return max(0.0, float((earliest - utcnow()).total_seconds()))

    def close(self) -> None:
        """The store is shared; nothing to release here."""


@hookimpl(trylast=True)
def retry_management(settings: Settings, transport: Transport, store: Store) -> RetryManagement:
    """The core's default: the transport's own delays when it has them, else the schedule."""
    if transport.native_delays:
        return TransportDelays(transport)
    return DatabaseSchedule(transport, store)

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
