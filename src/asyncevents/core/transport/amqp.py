"""RabbitMQ (``amqp://``): publisher confirms in batches, delays in TTL queues.

Every publish waits for RabbitMQ's confirm, but a batch waits once: the
publishing channel is put in confirm mode, every message is sent through
kombu's producer, and the confirms (which RabbitMQ may send for several
messages at once with ``multiple``) are collected at the end. A lost
connection sends the unconfirmed batch again on a new one (at least once).

A delay parks the message in a queue whose TTL dead-letters it back into
its route: one queue per distinct delay, since RabbitMQ only expires
messages at the head of a queue.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Collection, Sequence
from typing import Any

from kombu import Connection, Exchange, Producer, Queue

from asyncevents.core.hookspecs import hookimpl
from asyncevents.core.messages import DEFAULT_QUEUE, Message, Route
from asyncevents.core.settings import Settings
from asyncevents.core.transport.base import (
    OnDropped,
    OnReceived,
    QueueStats,
    Transport,
    first_line,
)
from asyncevents.core.transport.kombubase import KombuConsumption, KombuTransport
from asyncevents.core.transport.topology import Topology, delay_ms
from asyncevents.errors import TransportError

__all__ = ["AmqpTransport", "register_transports"]

# Waits before each new try of a batch after a lost connection (seconds).
_RETRY_WAITS = (0.2, 0.7, 1.2)
_CONFIRM_TIMEOUT = 30.0
# The confirms' wait of a fail-fast publish (a blocked broker must not stall the caller).
_FAST_CONFIRM_TIMEOUT = 1.0


class _Confirms:
    """Counts confirmed delivery tags; ``multiple`` acks cover every tag up to theirs."""

    def __init__(self) -> None:
        self.upto = 0  # every tag <= upto is confirmed
        self.singles: set[int] = set()  # confirmed tags above upto
        self.nacked = 0

    @property
    def count(self) -> int:
        return self.upto + len(self.singles)

    def ack(self, tag: int, multiple: bool) -> None:
        if tag <= self.upto:
            return
        if multiple:
            self.upto = tag
            self.singles = {t for t in self.singles if t > tag}
        else:
            self.singles.add(tag)

    def nack(self, tag: int, multiple: bool) -> None:
        self.nacked += 1
        self.ack(tag, multiple)  # settled, though refused


class _Publisher:
    """One thread's connection and confirm-mode channel."""

    def __init__(self, conn: Connection, tries: int) -> None:
        self.conn = conn
        conn.ensure_connection(max_retries=tries)
        self.channel = conn.channel()
        self.confirms = _Confirms()
        self.channel.confirm_select()
        self.channel.events["basic_ack"].add(self.confirms.ack)
        self.channel.events["basic_nack"].add(self.confirms.nack)
        self.producer = Producer(self.channel, serializer="json")
        self.sent = 0

    def send(self, items: Sequence[tuple[dict[str, Any], Exchange | str, str, Queue]],
             confirm_timeout: float = _CONFIRM_TIMEOUT) -> None:
        nacked_before = self.confirms.nacked
        for body, exchange, routing_key, queue in items:
            self.producer.publish(body, exchange=exchange, routing_key=routing_key,
                                  delivery_mode=2, declare=[queue], retry=False)
            self.sent += 1
        deadline = time.monotonic() + confirm_timeout
        while self.confirms.count < self.sent:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                missing = self.sent - self.confirms.count
                raise TransportError(f"RabbitMQ did not confirm {missing} of {len(items)} "
                                     f"messages within {confirm_timeout:g} s")
            with contextlib.suppress(TimeoutError):
                self.conn.drain_events(timeout=min(remaining, 1.0))
        if self.confirms.nacked > nacked_before:
            raise TransportError(f"RabbitMQ refused {self.confirms.nacked - nacked_before} "
                                 f"of {len(items)} messages")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.release()


class AmqpTransport(KombuTransport):
    """RabbitMQ: durable queues, confirmed publishes, TTL delay queues.

    ``ASYNCEVENTS_AMQP_QUEUE_TYPE=quorum`` makes every queue a quorum queue
    (see :class:`~.topology.Topology`); prefetch is always per consumer, as
    quorum queues require. A URL may list several nodes, ``amqp://h1;amqp://h2``:
    kombu moves to the next one when a node is lost.
    """

    native_delays = True

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.topology = Topology(settings.queue_prefix,
                                 quorum=settings.amqp_queue_type == "quorum",
                                 delivery_limit=settings.amqp_delivery_limit,
                                 names=self.names)
        self.connect_tries = max(1, self.url.count(";") + 1)

    def connect(self) -> Connection:
        """A connection with heartbeats (kombu fails over between ``;``-separated URLs)."""
        return Connection(self.url, heartbeat=30, **self.connect_options())

    def consumption(self, conn: Connection, routes: Sequence[Route], on_received: OnReceived,
                    on_dropped: OnDropped, prefetch: int,
                    names: Sequence[str] = (DEFAULT_QUEUE,),
                    paused: Collection[str] = ()) -> KombuConsumption:
        """The routes' consumers; with quorum queues their dead-letter queues too (``dead``)."""
        dead = ({(name, route): self.topology.dead_queue(route, name)
                 for name in names for route in routes}
                if self.topology.quorum else None)
        return KombuConsumption(conn, self.queues(routes, names), on_received, on_dropped,
                                prefetch, dead, paused)

    def _publisher(self) -> _Publisher:
        publisher: _Publisher | None = getattr(self._local, "publisher", None)
        if publisher is None:
            # Failing fast: one try per node, no wait after the last.
            tries = self.connect_tries - (self.fail_fast_timeout() is not None)
            publisher = _Publisher(self.connect(), tries)
            with self._lock:
                self._connections.append(publisher.conn)
            self._local.publisher = publisher
        return publisher

    def _thread_connections(self) -> list[Connection]:
        """This thread's publishing connection (the confirm-mode publisher's)."""
        publisher: _Publisher | None = getattr(self._local, "publisher", None)
        return [publisher.conn] if publisher is not None else []

    def _drop_publisher(self) -> None:
        publisher: _Publisher | None = getattr(self._local, "publisher", None)
        self._local.publisher = None
        if publisher is not None:
            with self._lock:
                if publisher.conn in self._connections:
                    self._connections.remove(publisher.conn)
            publisher.close()

    def _item(self, message: Message, delay: float
              ) -> tuple[dict[str, Any], Exchange | str, str, Queue]:
        if delay > 0:
            queue = self.topology.delay_queue(message.route, delay_ms(delay), message.queue)
            return message.body(), "", str(queue.routing_key), queue
        queue = self.topology.queue(message.route, message.queue)
        return message.body(), self.topology.exchange, str(queue.routing_key), queue

    def _publish(self, items: Sequence[tuple[dict[str, Any], Exchange | str, str, Queue]]
                 ) -> None:
        if not items:
            return
        errors = self.connection_errors
        fast = self.fail_fast_timeout() is not None
        for wait in (None,) if fast else (*_RETRY_WAITS, None):
            try:
                self._publisher().send(items, _FAST_CONFIRM_TIMEOUT if fast else _CONFIRM_TIMEOUT)
                return
            except TransportError:
                self._drop_publisher()
                raise
            except errors as exc:
                self._drop_publisher()
                if wait is None:
                    raise TransportError(f"cannot publish to the broker at {self.safe_url()}: "
                                         f"{first_line(exc)}") from None
                time.sleep(wait)
            except Exception as exc:
                self._drop_publisher()
                raise TransportError(f"cannot publish to the broker at {self.safe_url()}: "
                                     f"{first_line(exc)}") from None

    def enqueue(self, message: Message, *, delay: float = 0.0) -> None:
        """Send ``message`` (to a delay queue when ``delay`` > 0) and wait for its confirm."""
        self._publish([self._item(message, delay)])

    def enqueue_many(self, messages: Sequence[Message]) -> None:
        """Send every message, then wait once for all the confirms."""
        self._publish([self._item(message, 0.0) for message in messages])

    def queue_stats(self) -> list[QueueStats]:
        """Ready messages and consumers per queue, from a passive ``queue.declare``.

        Without the management API RabbitMQ does not tell how many messages
        are delivered and unacknowledged (in flight), nor what waits in the
        delay queues, whose names depend on each delay: both stay ``None``
        (the store's ``retrying`` counts say what waits for a retry).
        """
        found: list[QueueStats] = []
        conn = self.connect()
        try:
            conn.ensure_connection(max_retries=self.connect_tries, timeout=3)
            for queue in self.topology.queues:
                with conn.channel() as channel:
                    try:
                        ok = channel.queue_declare(queue=queue.name, passive=True)
                    except Exception:  # not declared yet: nothing was ever sent to it
                        found.append(QueueStats(queue.name, 0, consumers=0))
                        continue
                found.append(QueueStats(queue.name, int(ok.message_count),
                                        consumers=int(ok.consumer_count)))
        finally:
            conn.release()
        return found

@hookimpl(trylast=True)
def register_transports(register: Callable[[str, type[Transport]], None]) -> None:
    """``amqp://``, ``pyamqp://`` and ``amqps://`` URLs."""
    for scheme in ("amqp", "pyamqp", "amqps"):
        register(scheme, AmqpTransport)
