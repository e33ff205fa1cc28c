"""Publishers (a kombu connection in confirm mode and its producer) pooled per broker.

A py-amqp connection is not thread-safe, so each worker thread borrows a
publisher of its own for one publish and gives it back. A publisher that saw
any error is closed rather than given back: after a timeout or a channel error
its channel may still owe an answer, which the next publish would mistake
for its own confirm.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kombu import Connection, Producer

from asyncevents import Settings, guarded_addresses
from asyncevents_amqp.recipient import Target
from asyncevents_amqp.settings import AmqpSettings

__all__ = ["Publisher", "PublisherPool", "Unroutable", "tls_options"]

_Key = tuple[Target, str]


class Unroutable(Exception):
    """The broker returned a mandatory message: no queue is bound for its routing key."""

    def __init__(self, reply_code: int, reply_text: str, exchange: str, routing_key: str) -> None:
        self.reply_code = reply_code
        super().__init__(f"no queue takes routing key {routing_key!r} on exchange "
                         f"{exchange or '(default)'!r}: {reply_code} {reply_text}")


class Publisher:
    """One connection in publisher-confirm mode, with a producer on its default channel."""

    def __init__(self, target: Target, password: str, options: AmqpSettings,
                 settings: Settings) -> None:
        self.target = target
        self.options = options
        self._returned: Unroutable | None = None
        #: How many messages this publisher has had confirmed.
        self.uses = 0
        # The address guard at connect time: the broker's name is resolved once,
        # every address checked (InvalidRecipient when one is private and not
        # allowed), and the connection goes to those addresses, never to a second
        # lookup's answer (DNS rebinding). TLS still checks the certificate
        # against the name.
        error: OSError | None = None
        for address in guarded_addresses(target.host, target.port, settings):
            self.connection = Connection(
                hostname=address.host, port=address.port, userid=target.user,
                password=password, virtual_host=target.vhost, ssl=tls_options(target, options),
                transport="pyamqp", connect_timeout=options.timeout, heartbeat=0,
                transport_options={"confirm_publish": True, "read_timeout": options.timeout,
                                   "write_timeout": options.timeout},
            )
            try:
                self.connection.connect()
                break
            except OSError as exc:  # refused, unreachable: the next address may answer
                self.connection.collect()
                error = exc
        else:
            raise error or ConnectionError(f"no address to connect to for {target.broker}")
        self.producer = Producer(self.connection.default_channel, on_return=self._on_return)

    def publish(self, body: bytes, properties: dict[str, Any], headers: dict[str, str]) -> None:
        """Publish and wait for the broker's confirm.

        Raises ``Unroutable`` when a mandatory message came back, py-amqp's
        ``MessageNacked`` on a nack, its channel and connection errors, or
        ``TimeoutError`` when no confirm comes in time.
        """
        self._returned = None
        self.producer.publish(
            body, exchange=self.target.exchange, routing_key=self.target.routing_key,
            mandatory=self.options.mandatory, headers=headers, retry=False,
            timeout=self.options.timeout, confirm_timeout=self.options.timeout, **properties)
        # The broker sends basic.return before the confirm: it is known by now.
        if self._returned is not None:
            raise self._returned
        self.uses += 1

    def close(self) -> None:
        """Close the connection, quietly: it may already be broken."""
        try:
            self.connection.release()
        except Exception:  # a broken socket refuses a polite close
            self.connection.collect()

    def _on_return(self, exc: Exception, exchange: str, routing_key: str, message: Any) -> None:
        code = getattr(exc, "reply_code", None) or getattr(exc, "code", None) or 312
        text = getattr(exc, "reply_text", None) or "NO_ROUTE"
        self._returned = Unroutable(int(code), str(text), exchange, routing_key)


def tls_options(target: Target, options: AmqpSettings) -> dict[str, Any] | bool:
    """py-amqp's ``ssl`` options for ``target``: ``False`` without TLS; otherwise a
    default context (the system's CAs, or ``ca_file``) checking the certificate against
    the broker's name, which is also the SNI name, although the connection goes to an
    address (a bare ``SSLContext`` would be ignored by py-amqp)."""
    if not target.tls:
        return False
    return {"context": {"cafile": str(options.ca_file) if options.ca_file else None,
                        "check_hostname": True},
            "server_hostname": target.host}


class PublisherPool:
    """Idle publishers per broker, vhost, user and token; thread-safe."""

    def __init__(self, options: AmqpSettings, settings: Settings) -> None:
        self.options = options
        self.settings = settings
        self._idle: dict[_Key, list[Publisher]] = {}
        self._lock = threading.Lock()

    @contextmanager
    def borrow(self, target: Target, password: str, key: str) -> Iterator[Publisher]:
        """A publisher for ``target``, given back to the pool unless an error escaped.

        ``key`` (a digest of the password) tells credentials apart without
        keeping the password as a dictionary key.
        """
        # The exchange and routing key do not matter to a connection.
        where = (Target(target.scheme, target.host, target.port, target.user, target.vhost,
                        "", ""), key)
        with self._lock:
            idle = self._idle.get(where)
            publisher = idle.pop() if idle else None
        if publisher is None:
            publisher = Publisher(target, password, self.options, self.settings)
        publisher.target = target
        try:
            yield publisher
        except BaseException:
            publisher.close()
            raise
        with self._lock:
            idle = self._idle.setdefault(where, [])
            if len(idle) < self.options.max_idle:
                idle.append(publisher)
                return
        publisher.close()

    def close(self) -> None:
        """Close every idle publisher."""
        with self._lock:
            idle = [p for publishers in self._idle.values() for p in publishers]
            self._idle.clear()
        for publisher in idle:
            publisher.close()
