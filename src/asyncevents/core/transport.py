"""The broker: kombu connections chosen by URL, and publishing from any thread."""

from __future__ import annotations

import contextlib
import threading
from typing import Any

from kombu import Connection, Producer, Queue

from asyncevents.core.settings import Settings
from asyncevents.core.topology import Route, Topology
from asyncevents.errors import ConfigError, TransportError

__all__ = ["Broker"]

_PUBLISH_RETRY = {"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5,
                  "interval_max": 2.0}
_SUPPORTED = ("amqp", "pyamqp", "amqps", "sqla", "sqlalchemy", "memory", "redis", "rediss")


def scheme_of(url: str) -> str:
    """The transport part of a URL: ``amqp``, ``sqla``, ``memory``, ``redis``..."""
    scheme, sep, _ = url.partition("://")
    if not sep:
        raise ConfigError(f"invalid transport URL {url!r}: expected scheme://...")
    return scheme.split("+", 1)[0]


def _first_line(exc: BaseException) -> str:
    # SQLAlchemy appends "(Background on this error at: ...)" on a second line.
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


class Broker:
    """Connections to the transport named by ``settings.transport_url``.

    kombu connections are not thread-safe, so every thread that publishes gets
    its own connection and producer.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.url = settings.transport_url
        self.scheme = scheme_of(self.url)
        if self.scheme not in _SUPPORTED:
            raise ConfigError(
                f"unsupported transport {self.scheme!r} in {self.url!r}; "
                "use amqp://, sqla+<database url>, redis:// or memory://"
            )
        self.topology = Topology(settings.queue_prefix)
        self._local = threading.local()
        self._connections: list[Connection] = []
        self._lock = threading.Lock()

    @property
    def has_native_delays(self) -> bool:
        """True for RabbitMQ, whose TTL queues can hold a message for a while."""
        return self.scheme in ("amqp", "pyamqp", "amqps")

    def safe_url(self) -> str:
        """The URL without its password, for messages and logs."""
        scheme, _, rest = self.url.partition("://")
        if "@" in rest:
            creds, _, host = rest.rpartition("@")
            user = creds.split(":", 1)[0]
            return f"{scheme}://{user}:***@{host}"
        return self.url

    def connect(self) -> Connection:
        """A new kombu connection (the caller owns and releases it)."""
        if self.scheme in ("sqla", "sqlalchemy"):
            from asyncevents.core import sqltransport

            return sqltransport.connection(
                self.url, polling_interval=self.settings.polling_interval,
                lease_seconds=self.settings.lease_seconds,
            )
        options: dict[str, Any] = {}
        if self.has_native_delays:
            options["confirm_publish"] = True
        return Connection(self.url, transport_options=options, heartbeat=30 if options else 0)

    def check(self, timeout: float = 5.0) -> None:
        """Raise ``TransportError`` when the broker cannot be reached."""
        conn = self.connect()
        try:
            conn.ensure_connection(max_retries=1, timeout=timeout)
            with conn.channel() as channel:
                for queue in self.topology.queues:
                    queue(channel).declare()
        except Exception as exc:
            raise TransportError(f"cannot reach the broker at {self.safe_url()}: {exc}") from None
        finally:
            conn.release()

    def _producer(self) -> tuple[Producer, set[str]]:
        state = getattr(self._local, "state", None)
        if state is None:
            conn = self.connect()
            with self._lock:
                self._connections.append(conn)
            state = (Producer(conn, serializer="json"), set(), conn)
            self._local.state = state
        return state[0], state[1]

    def _send(self, body: dict[str, Any], exchange: Any, routing_key: str, queue: Queue,
              headers: dict[str, Any] | None) -> None:
        producer, _ = self._producer()
        try:
            # declare=[queue] on every call, not only the first: kombu skips it
            # while the connection lives (its declared-entities cache), and when
            # its retry reconnects the cache is empty, so the queue and its
            # binding are declared again. On the SQL transport bindings live in
            # the connection's memory: a retry without them routed the message
            # nowhere, and publish() returned as if it had been sent.
            producer.publish(
                body, exchange=exchange, routing_key=routing_key, delivery_mode=2,
                headers=headers or {}, declare=[queue], retry=True,
                retry_policy=_PUBLISH_RETRY,
            )
        except Exception as exc:
            self._reset()
            raise TransportError(
                f"cannot publish to the broker at {self.safe_url()}: {_first_line(exc)}"
            ) from None

    def publish(self, route: Route, body: dict[str, Any],
                headers: dict[str, Any] | None = None) -> None:
        """Send ``body`` to the ``route`` queue, confirmed by RabbitMQ when it is AMQP."""
        queue = self.topology.queue(route)
        self._send(body, self.topology.exchange, route, queue, headers)

    def publish_many(self, route: Route, bodies: list[dict[str, Any]]) -> None:
        """Send several bodies to ``route``; on RabbitMQ, one wait for all confirms."""
        if not self.has_native_delays:
            for body in bodies:
                self.publish(route, body)
            return
        from asyncevents.core.batchpublish import publish_confirmed_batch

        producer, declared = self._producer()
        queue = self.topology.queue(route)
        try:
            if queue.name not in declared:
                queue(producer.channel).declare()
                declared.add(queue.name)
            publish_confirmed_batch(self._local.state[2], self.topology.prefix, route, bodies)
        except TransportError:
            raise
        except Exception as exc:
            self._reset()
            raise TransportError(
                f"cannot publish to the broker at {self.safe_url()}: {exc}"
            ) from None

    def publish_delayed(self, route: Route, body: dict[str, Any], delay_ms: int) -> None:
        """Park ``body`` in the TTL queue for ``delay_ms`` (AMQP only)."""
        queue = self.topology.delay_queue(route, delay_ms)
        self._send(body, "", queue.routing_key, queue, None)

    def _reset(self) -> None:
        state = getattr(self._local, "state", None)
        if state is not None:
            self._local.state = None
            with self._lock:
                if state[2] in self._connections:
                    self._connections.remove(state[2])
            with contextlib.suppress(Exception):
                state[2].release()

    def close(self) -> None:
        """Release every publishing connection."""
        with self._lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            with contextlib.suppress(Exception):
                conn.release()
        self._local = threading.local()
