"""Transports over kombu: the base of the shipped families, and kombu's other URLs.

:class:`KombuTransport` publishes through one kombu producer per thread
(kombu connections are not thread-safe) and consumes each route of each
named queue from its own kombu queue, so a message's route and named queue
are the queue it came from. Used as it is for
``memory://`` (tests) and ``redis://``, which have no delays of their own:
the database schedule holds their delayed messages.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import Any

import structlog
from kombu import Connection, Consumer, Producer, Queue
from kombu import Message as KombuMessage
from kombu.exceptions import OperationalError

from asyncevents.core.events.routing import Router
from asyncevents.core.hookspecs import hookimpl
from asyncevents.core.messages import DEFAULT_QUEUE, MalformedMessage, Message, Route, decode
from asyncevents.core.settings import Settings
from asyncevents.core.transport.base import (
    FAIL_FAST,
    OnDropped,
    OnReceived,
    QueueStats,
    Received,
    Transport,
    describe,
    first_line,
)
from asyncevents.core.transport.topology import Topology
from asyncevents.errors import TransportError

__all__ = ["KombuConsumption", "KombuReceived", "KombuTransport", "QueueMap",
           "register_transports"]

log = structlog.get_logger("asyncevents.transport")

#: The kombu queue of each (named queue, route).
QueueMap = dict[tuple[str, Route], Queue]

_PUBLISH_RETRY = {"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5,
                  "interval_max": 2.0}


class KombuReceived:
    """A kombu message decoded for its route; settled through kombu."""

    __slots__ = ("dead", "message", "raw", "route")

    def __init__(self, route: Route, message: Message, raw: KombuMessage,
                 dead: bool = False) -> None:
        self.route = route
        self.message = message
        self.raw = raw
        self.dead = dead

    def ack(self) -> None:
        """Acknowledge."""
        self.raw.ack()

    def requeue(self) -> None:
        """Put back in line."""
        self.raw.requeue()

    def drop(self) -> None:
        """Reject without requeue."""
        self.raw.reject()


class KombuConsumption:
    """One kombu connection with a consumer per route of each named queue.

    It is :class:`~.base.Prioritised`: a named queue's consumers can be
    cancelled and started again, and the ready messages of named queues
    counted on a channel of the same connection.
    """

    def __init__(self, conn: Connection, queues: QueueMap, on_received: OnReceived,
                 on_dropped: OnDropped, prefetch: int,
                 dead_queues: QueueMap | None = None, paused: Collection[str] = ()) -> None:
        self.conn = conn
        self._on_received = on_received
        self._on_dropped = on_dropped
        channel = conn.channel()
        self.channel = channel
        self.consumers: list[Consumer] = []
        self._named: dict[str, list[Consumer]] = {}
        self._queue_names: dict[str, list[str]] = {}
        self._paused: set[str] = set(paused)
        self._probe: Any = None
        for dead, found in ((False, queues), (True, dead_queues or {})):
            for (name, route), queue in found.items():
                consumer = Consumer(channel, queues=[queue], accept=["json"],
                                    callbacks=[self._callback(name, route, dead)],
                                    on_decode_error=self._undecodable, prefetch_count=prefetch)
                if name not in self._paused:
                    consumer.consume()
                self.consumers.append(consumer)
                self._named.setdefault(name, []).append(consumer)
                self._queue_names.setdefault(name, []).append(str(queue.name))

    def pause(self, queues: Sequence[str]) -> None:
        """Cancel the consumers of ``queues``; what they were sent is still handed over."""
        for name in queues:
            if name in self._named and name not in self._paused:
                self._paused.add(name)
                for consumer in self._named[name]:
                    consumer.cancel()

    def resume(self, queues: Sequence[str]) -> None:
        """Start the consumers of paused ``queues`` again."""
        for name in queues:
            if name in self._paused:
                self._paused.discard(name)
                for consumer in self._named[name]:
                    consumer.consume()

    def ready(self, queues: Sequence[str]) -> int:
        """Ready messages of ``queues``, by a passive declare on a channel of our own."""
        total = 0
        for name in queues:
            for queue_name in self._queue_names.get(name, []):
                if self._probe is None:
                    self._probe = self.conn.channel()
                try:
                    ok = self._probe.queue_declare(queue=queue_name, passive=True)
                except self.conn.channel_errors:
                    # Gone (a quorum dead-letter queue nobody declared): that
                    # closed the channel, and nothing waits there.
                    self._probe = None
                    continue
                total += int(ok.message_count)
        return total

    def queue_names(self, queues: Sequence[str]) -> list[str]:
        """The kombu queues this consumption takes for the named ``queues``."""
        return [queue for name in queues for queue in self._queue_names.get(name, [])]

    def _callback(self, name: str, route: Route,
                  dead: bool) -> Callable[[Any, KombuMessage], None]:
        def received(body: Any, raw: KombuMessage) -> None:
            try:
                message = decode(route, body, queue=name)
            except MalformedMessage as exc:
                log.error("malformed message dropped", route=route, problem=str(exc),
                          body=repr(body)[:200])
                raw.reject()
                self._on_dropped(str(exc))
                return
            self._on_received(KombuReceived(route, message, raw, dead))

        return received

    def _undecodable(self, raw: KombuMessage, exc: Exception) -> None:
        # Bytes that are not JSON never will be: redelivering them would only
        # make every worker fail on them forever.
        log.error("undecodable message dropped", error=describe(exc),
                  content_type=raw.content_type, size=len(raw.body or b""))
        raw.reject()
        self._on_dropped(describe(exc))

    def drain(self, timeout: float) -> None:
        """Hand over what arrives within ``timeout``."""
        try:
            self.conn.drain_events(timeout=timeout)
        except TimeoutError:
            pass
        except socket.timeout:  # noqa: UP041 - kombu raises either
            pass

    def ack_many(self, received: Sequence[Received]) -> None:
        """Acknowledge each (a transport with a cheaper way overrides this)."""
        for one in received:
            one.ack()

    def heartbeat(self) -> None:
        """py-amqp sends heartbeats only when asked; idle workers would be cut off."""
        self.conn.heartbeat_check()

    def cancel(self) -> None:
        """Cancel every consumer."""
        for consumer in self.consumers:
            consumer.cancel()

    def close(self) -> None:
        """Release the connection."""
        if self._probe is not None:
            with contextlib.suppress(Exception):
                self._probe.close()
        self.conn.release()


class KombuTransport(Transport):
    """Any kombu URL; the shipped families subclass it."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        #: Every named queue of the installation, ``default`` last.
        self.names = tuple(Router(settings.routing).queues)
        self.topology = Topology(settings.queue_prefix, names=self.names)
        self._local = threading.local()
        self._connections: list[Connection] = []
        self._lock = threading.Lock()
        self._errors: tuple[type[BaseException], ...] | None = None
        #: Connection tries before giving up (one per node of a failover URL).
        self.connect_tries = 1

    def connect(self) -> Connection:
        """A new kombu connection (the caller owns and releases it)."""
        return Connection(self.url, **self.connect_options())

    def connect_options(self) -> dict[str, Any]:
        """``kombu.Connection`` options for this thread (a short connect timeout: failing fast)."""
        fast = self.fail_fast_timeout()
        return {} if fast is None else {"connect_timeout": fast}

    @contextlib.contextmanager
    def fail_fast(self, timeout: float = FAIL_FAST) -> Iterator[None]:
        """Publishes of this thread within the block: one try, ``timeout`` s to connect.

        A publishing connection made in the block waits as long as any
        other for its later reconnections.
        """
        before = self.fail_fast_timeout()
        self._local.fail_fast = timeout
        try:
            yield
        finally:
            self._local.fail_fast = before
            if before is None:
                for conn in self._thread_connections():
                    conn.connect_timeout = Connection.connect_timeout  # kombu's default

    def fail_fast_timeout(self) -> float | None:
        """The connect timeout of this thread's fail-fast block, or None outside one."""
        timeout: float | None = getattr(self._local, "fail_fast", None)
        return timeout

    def _thread_connections(self) -> list[Connection]:
        """This thread's publishing connections."""
        conn = getattr(self._local, "conn", None)
        return [conn] if conn is not None else []

    @property
    def connection_errors(self) -> tuple[type[BaseException], ...]:
        """kombu's connection errors for this URL, and the socket-level ones."""
        if self._errors is None:
            conn = self.connect()
            try:
                # OperationalError: kombu's own wrapper when ensure_connection gives up.
                self._errors = (*tuple(conn.connection_errors), ConnectionError, OSError,
                                OperationalError)
            finally:
                conn.release()
        return self._errors

    def queues(self, routes: Sequence[Route],
               names: Sequence[str] = (DEFAULT_QUEUE,)) -> QueueMap:
        """The queue of each route of each named queue."""
        return {(name, route): self.topology.queue(route, name)
                for name in names for route in routes}

    def consume(self, routes: Sequence[Route], on_received: OnReceived,
                on_dropped: OnDropped, *, prefetch: int,
                queues: Sequence[str] = (DEFAULT_QUEUE,),
                paused: Collection[str] = ()) -> KombuConsumption:
        """Connect (one try per node: the worker paces reconnections) and consume ``routes``."""
        conn = self.connect()
        try:
            conn.ensure_connection(max_retries=self.connect_tries)
            return self.consumption(conn, routes, on_received, on_dropped, prefetch, queues,
                                    paused)
        except BaseException:
            conn.release()
            raise

    def consumption(self, conn: Connection, routes: Sequence[Route], on_received: OnReceived,
                    on_dropped: OnDropped, prefetch: int,
                    names: Sequence[str] = (DEFAULT_QUEUE,),
                    paused: Collection[str] = ()) -> KombuConsumption:
        """The consumers on a connected ``conn`` (a family may consume more, or renew)."""
        return KombuConsumption(conn, self.queues(routes, names), on_received, on_dropped,
                                prefetch, paused=paused)

    def waiting(self, queues: Sequence[str]) -> int | None:
        """Ready messages of the named ``queues``, from :meth:`queue_stats`."""
        names = {str(queue.name) for queue in self.topology.queues_of(list(queues))}
        counts = [stats.ready for stats in self.queue_stats() if stats.name in names]
        if any(count is None for count in counts):
            return None
        return sum(count or 0 for count in counts)

    def check(self, timeout: float = 5.0) -> None:
        """Connect and declare the queues, or raise ``TransportError``."""
        conn = self.connect()
        try:
            conn.ensure_connection(max_retries=self.connect_tries, timeout=timeout)
            with conn.channel() as channel:
                for queue in self.topology.queues:
                    queue(channel).declare()
        except Exception as exc:
            raise TransportError(f"cannot reach the broker at {self.safe_url()}: {exc}") from None
        finally:
            conn.release()

    def queue_sizes(self) -> dict[str, int]:
        """Ready messages per queue (a queue not declared yet is left out)."""
        sizes: dict[str, int] = {}
        conn = self.connect()
        try:
            conn.ensure_connection(max_retries=self.connect_tries, timeout=3)
            for queue in self.topology.queues:
                with conn.channel() as channel:
                    try:
                        ok = channel.queue_declare(queue=queue.name, passive=True)
                    except Exception:  # not declared yet: nothing published to it
                        continue
                sizes[queue.name] = int(ok.message_count)
        finally:
            conn.release()
        return sizes

    def queue_stats(self) -> list[QueueStats]:
        """Every queue's ready messages (0 for one never used, which Redis does not keep).

        kombu's memory and Redis transports tell nothing more: what is in
        flight is known only to each consumer, and delayed messages wait in
        the database schedule (``asyncevents stats`` counts them there).
        """
        sizes = self.queue_sizes()
        return [QueueStats(queue.name, sizes.get(queue.name, 0))
                for queue in self.topology.queues]

    def _producer(self) -> Producer:
        producer: Producer | None = getattr(self._local, "producer", None)
        if producer is None:
            conn = self.connect()
            with self._lock:
                self._connections.append(conn)
            producer = Producer(conn, serializer="json")
            self._local.producer, self._local.conn = producer, conn
        return producer

    def publish_raw(self, body: dict[str, Any], *, route: Route,
                    headers: dict[str, Any] | None = None, queue_name: str = DEFAULT_QUEUE
                    ) -> None:
        """Send ``body`` to ``route``'s queue of ``queue_name``, retried through a reconnect."""
        queue = self.topology.queue(route, queue_name)
        try:
            # declare=[queue] on every call, not only the first: kombu skips it
            # while the connection lives (its declared-entities cache), and when
            # its retry reconnects the cache is empty, so the queue and its
            # binding are declared again. On the SQL transport bindings live in
            # the connection's memory: a retry without them routed the message
            # nowhere, and publish() returned as if it had been sent.
            self._producer().publish(
                body, exchange=self.topology.exchange, routing_key=queue.routing_key,
                delivery_mode=2,
                headers=headers or {}, declare=[queue],
                retry=self.fail_fast_timeout() is None, retry_policy=_PUBLISH_RETRY,
            )
        except Exception as exc:
            self._reset()
            raise TransportError(
                f"cannot publish to the broker at {self.safe_url()}: {first_line(exc)}"
            ) from None

    def enqueue(self, message: Message, *, delay: float = 0.0) -> None:
        """Send ``message`` now (no delays here: see the module docstring)."""
        if delay > 0:
            raise TransportError(f"the {self.scheme} transport cannot delay a message; "
                                 "the RetryManagement holds delayed messages")
        self.publish_raw(message.body(), route=message.route, queue_name=message.queue)

    def enqueue_many(self, messages: Sequence[Message]) -> None:
        """Send each message in turn."""
        for message in messages:
            self.enqueue(message)

    def _reset(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.producer = self._local.conn = None
        if conn is not None:
            with self._lock:
                if conn in self._connections:
                    self._connections.remove(conn)
            with contextlib.suppress(Exception):
                conn.release()

    def close(self) -> None:
        """Release every publishing connection."""
        with self._lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            with contextlib.suppress(Exception):
                conn.release()
        self._local = threading.local()


@hookimpl(trylast=True)
def register_transports(register: Callable[[str, type[Transport]], None]) -> None:
    """kombu's in-memory and Redis transports."""
    for scheme in ("memory", "redis", "rediss"):
        register(scheme, KombuTransport)
