"""``sync://``: dispatch and delivery run in the publishing process, before publish returns.

For development and tests: no broker and no worker needed, and every record
(deliveries, attempts, traces) is the same as through a queue. The App binds
its handlers to the transport (:meth:`SyncTransport.bind`), so an enqueued
message is handled at once, in the caller's thread; a handler's error reaches
the caller. Retries wait in the database schedule (this transport has no
delays of its own) until a worker pumps them: ``asyncevents worker`` on
``sync://`` consumes nothing and sends what falls due.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence

from asyncevents.core.hookspecs import hookimpl
from asyncevents.core.messages import DEFAULT_QUEUE, Message, Route
from asyncevents.core.settings import Settings
from asyncevents.core.transport.base import (
    Handlers,
    OnDropped,
    OnReceived,
    Received,
    Transport,
)
from asyncevents.errors import TransportError

__all__ = ["SyncTransport", "register_transports"]

class _Idle:
    """A consumption with nothing to consume: the worker only pumps the schedule."""

    def drain(self, timeout: float) -> None:
        time.sleep(timeout)

    def ack_many(self, received: Sequence[Received]) -> None:
        pass

    def heartbeat(self) -> None:
        pass

    def cancel(self) -> None:
        pass

    def close(self) -> None:
        pass


class SyncTransport(Transport):
    """Handles each message in the caller's thread."""

    runs_inline = True

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self._handlers: Handlers | None = None

    def bind(self, handlers: Handlers) -> None:
        """Run messages with these handlers (the App does this)."""
        self._handlers = handlers

    @property
    def connection_errors(self) -> tuple[type[BaseException], ...]:
        """Nothing to lose a connection to."""
        return ()

    def enqueue(self, message: Message, *, delay: float = 0.0) -> None:
        """Handle ``message`` now."""
        if delay > 0:
            raise TransportError("sync:// cannot delay a message; the RetryManagement holds it")
        if self._handlers is None:
            raise TransportError("sync:// runs messages through an App: publish with App()")
        self._handlers()[message.route](message)

    def enqueue_many(self, messages: Sequence[Message]) -> None:
        """Handle each message in turn."""
        for message in messages:
            self.enqueue(message)

    def consume(self, routes: Sequence[Route], on_received: OnReceived,
                on_dropped: OnDropped, *, prefetch: int,
                queues: Sequence[str] = (DEFAULT_QUEUE,),
                paused: Collection[str] = ()) -> _Idle:
        """Nothing waits in a queue: every message was handled when it was sent."""
        return _Idle()

    def check(self, timeout: float = 5.0) -> None:
        """Always reachable."""

    def queue_sizes(self) -> dict[str, int]:
        """No queues."""
        return {}

    def close(self) -> None:
        """Nothing to release."""


@hookimpl(trylast=True)
def register_transports(register: Callable[[str, type[Transport]], None]) -> None:
    """``sync://``."""
    register("sync", SyncTransport)
