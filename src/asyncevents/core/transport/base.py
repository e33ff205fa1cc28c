"""The transport interface: what the core asks of any queue.

A transport carries typed messages (:mod:`asyncevents.core.messages`) on
named routes. It can

- enqueue one message, now or after a delay, and many with one wait for
  their confirms;
- consume routes: each message is decoded and checked once, here at the
  boundary, and handed on with the route it came from (the queue tells it,
  never the body); the receiver settles it later with ack, requeue or drop;
- keep each route apart per named queue (``[routing]``, :mod:`..routing`): a
  message goes to its ``message.queue``, a consumer takes the named queues it
  is given, and a :class:`Prioritised` consumption lets the worker pause the
  later ones while an earlier one has messages waiting;
- check that it is reachable, and close.

Transports are found by URL scheme through the ``register_transports`` hook
(:func:`asyncevents.core.plugins.Plugins.transport_class`); the shipped ones
(``amqp``, ``sqla``, ``memory``/``redis``, ``sync``) register through the same entry
point as a third-party one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar, Protocol, runtime_checkable

from asyncevents.core.messages import DEFAULT_QUEUE, Message, Route
from asyncevents.core.settings import Settings
from asyncevents.errors import ConfigError

__all__ = [
    "FAIL_FAST",
    "Consumption",
    "Handlers",
    "Prioritised",
    "QueueStats",
    "Received",
    "Transport",
    "describe",
    "first_line",
    "safe_url",
    "scheme_of",
]


#: Seconds a fail-fast publish waits for the broker to answer (:meth:`Transport.fail_fast`).
FAIL_FAST = 0.1


def scheme_of(url: str) -> str:
    """The transport part of a URL: ``amqp``, ``sqla``, ``memory``, ``redis``..."""
    scheme, sep, _ = url.partition("://")
    if not sep:
        raise ConfigError(f"invalid transport URL {url!r}: expected scheme://...")
    return scheme.split("+", 1)[0]


def safe_url(url: str) -> str:
    """``url`` without its passwords (every node of a ``;`` list), for messages and logs."""
    parts = []
    for one in url.split(";"):
        scheme, sep, rest = one.partition("://")
        if sep and "@" in rest:
            creds, _, host = rest.rpartition("@")
            user = creds.split(":", 1)[0]
            one = f"{scheme}://{user}:***@{host}"
        parts.append(one)
    return ";".join(parts)


def first_line(exc: BaseException) -> str:
    """An error's first line (SQLAlchemy appends "(Background on this error at: ...)")."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def describe(exc: BaseException) -> str:
    """``Type: message`` for logs."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@dataclass(frozen=True)
class QueueStats:
    """What a transport can tell about one queue; ``None`` where it cannot know."""

    name: str
    ready: int | None
    """Messages waiting to be handed out now."""
    in_flight: int | None = None
    """Messages handed to a worker and not settled yet."""
    delayed: int | None = None
    """Messages held back until later (retries, delayed publishes)."""
    consumers: int | None = None
    """Consumers attached to the queue."""


class Received(Protocol):
    """A message taken from a queue, waiting to be settled (exactly once)."""

    route: Route
    message: Message
    dead: bool
    """True when the transport gave up on it (RabbitMQ's delivery limit): record it as dead."""

    def ack(self) -> None:
        """Done: the queue forgets the message."""

    def requeue(self) -> None:
        """Not done: back in line for another try."""

    def drop(self) -> None:
        """Never to be done: removed without an ack's meaning (logged by the caller)."""


class Consumption(Protocol):
    """Consumers of some routes on one connection, driven by the worker's loop."""

    def drain(self, timeout: float) -> None:
        """Hand what arrives within ``timeout`` seconds to the callback."""

    def ack_many(self, received: Sequence[Received]) -> None:
        """Acknowledge several messages of this consumption at once (one statement on SQL)."""

    def heartbeat(self) -> None:
        """Keep the connection alive (called every turn of the loop)."""

    def cancel(self) -> None:
        """Stop receiving; messages not yet handed over go back to their queue."""

    def close(self) -> None:
        """Release the connection (unsettled messages go back to their queues)."""


@runtime_checkable
class Prioritised(Protocol):
    """A consumption of several named queues that the worker can pause queue by queue.

    The worker consumes ``--queues critical,default`` in that order of
    priority by pausing ``default`` while ``critical`` has messages waiting.
    """

    def pause(self, queues: Sequence[str]) -> None:
        """Stop taking messages from ``queues`` (those already taken are still handed over)."""

    def resume(self, queues: Sequence[str]) -> None:
        """Take messages from ``queues`` again."""

    def ready(self, queues: Sequence[str]) -> int:
        """Messages waiting now on ``queues`` (both routes), through this connection."""


#: What a consumption hands each valid message to.
OnReceived = Callable[[Received], None]
#: What it tells about a message it dropped as malformed (the reason).
OnDropped = Callable[[str], None]
#: The route handlers of an App, built on first use (they need the store).
Handlers = Callable[[], Mapping[Route, Callable[[Message], None]]]


class Transport(ABC):
    """One installation's queues on the transport at ``settings.transport_url``.

    Safe to use from several threads: each publishing thread gets its own
    connection.
    """

    #: True when the transport can hold a message back by itself (TTL queues,
    #: a future ``visible_at``); otherwise the database schedule does it.
    native_delays: ClassVar[bool] = False
    #: True when a message is handled in the sender's process (``sync://``):
    #: the App gives it its handlers with :meth:`bind`.
    runs_inline: ClassVar[bool] = False

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.url = settings.transport_url
        self.scheme = scheme_of(self.url)

    def bind(self, handlers: Handlers) -> None:  # noqa: B027 - only inline transports care
        """For transports that run inline: the handlers to run each message with."""

    def safe_url(self) -> str:
        """The URL without its password, for messages and logs."""
        return safe_url(self.url)

    @property
    @abstractmethod
    def connection_errors(self) -> tuple[type[BaseException], ...]:
        """Errors that mean the connection was lost (the worker reconnects)."""

    @abstractmethod
    def enqueue(self, message: Message, *, delay: float = 0.0) -> None:
        """Send ``message`` on its route, visible after ``delay`` seconds.

        A ``delay`` on a transport without ``native_delays`` is an error: the
        RetryManagement holds such messages instead.
        """

    @abstractmethod
    def enqueue_many(self, messages: Sequence[Message]) -> None:
        """Send several messages, waiting once for all their confirms."""

    @contextmanager
    def fail_fast(self, timeout: float = FAIL_FAST) -> Iterator[None]:
        """Within the block, a publish from this thread tries once and fails fast.

        For the transactional outbox's relay, which runs in the application's
        commit: a broker that is down must not hold the application up, the
        event waits in the outbox for a worker's sweep. The connection gets
        ``timeout`` seconds per step of its set-up, there is no retry loop,
        and a ``TransportError`` comes at once. This default changes nothing
        (a transport without retries of its own is fast already).
        """
        yield

    @abstractmethod
    def consume(self, routes: Sequence[Route], on_received: OnReceived,
                on_dropped: OnDropped, *, prefetch: int,
                queues: Sequence[str] = (DEFAULT_QUEUE,),
                paused: Collection[str] = ()) -> Consumption:
        """Open a connection and start consuming ``routes`` of each named queue of ``queues``.

        The queues in ``paused`` start paused (see :class:`Prioritised`). The
        worker passes ``queues`` and ``paused`` only when it consumes another
        queue than ``default``: a transport that has only ``default`` may
        leave them out.
        """

    @abstractmethod
    def check(self, timeout: float = 5.0) -> None:
        """Raise ``TransportError`` unless the transport answers (declares the queues)."""

    @abstractmethod
    def queue_sizes(self) -> dict[str, int]:
        """Messages ready in each of this installation's queues, by queue name."""

    def queue_stats(self) -> list[QueueStats]:
        """Each queue's figures; this default knows only :meth:`queue_sizes`' ready counts."""
        return [QueueStats(name, ready) for name, ready in sorted(self.queue_sizes().items())]

    def waiting(self, queues: Sequence[str]) -> int | None:
        """Messages ready now on the named ``queues`` (both routes); None when unknown.

        Delayed messages count once they are due, in-flight ones not at all.
        This default adds up the ready counts of :meth:`queue_stats`, for
        every queue: a transport with named queues narrows it down.
        """
        counts = [stats.ready for stats in self.queue_stats()]
        if any(count is None for count in counts):
            return None
        return sum(count or 0 for count in counts)

    def seconds_until_due(self) -> float | None:
        """Seconds until the next delayed message is due, when the transport can tell."""
        return None

    @abstractmethod
    def close(self) -> None:
        """Release every connection."""
