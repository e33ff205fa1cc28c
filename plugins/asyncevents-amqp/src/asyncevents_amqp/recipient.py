"""AMQP recipients: ``amqp://user@host[:port]/vhost/exchange/routing.key`` (``amqps://`` for TLS).

Each path segment is percent-decoded: the virtual host ``/`` is written
``%2F`` or left empty (``amqp://app@host//orders/created``, as kombu's
``amqp://…//`` does); an empty exchange is the default exchange, whose
routing key is a queue name (``amqp://app@host/shop//billing-queue``).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from asyncevents import InvalidRecipient

__all__ = ["Target", "parse_recipient"]

DEFAULT_PORTS = {"amqp": 5672, "amqps": 5671}
_FORM = "amqp://user@host[:port]/vhost/exchange/routing.key (or amqps://…)"


@dataclass(frozen=True)
class Target:
    """A recipient read: the broker, the credentials' user, and where to publish."""

    scheme: str
    host: str
    port: int
    user: str
    vhost: str
    exchange: str
    routing_key: str

    @property
    def tls(self) -> bool:
        """Whether the broker is reached over TLS (``amqps://``)."""
        return self.scheme == "amqps"

    @property
    def broker(self) -> str:
        """``scheme://host:port/vhost``, without credentials, for messages."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}/{self.vhost.replace('/', '%2F')}"


def parse_recipient(recipient: str) -> Target:
    """Read an AMQP recipient; ``InvalidRecipient`` says what is wrong with it."""
    try:
        url = urlsplit(recipient.strip())
        port = url.port
    except ValueError:
        raise InvalidRecipient(f"not a URL; expected {_FORM}") from None
    if url.scheme not in DEFAULT_PORTS or not url.hostname:
        raise InvalidRecipient(f"expected {_FORM}")
    if url.password is not None:
        raise InvalidRecipient("no password in the recipient: the subscription's token is the "
                               "password")
    if not url.username:
        raise InvalidRecipient(f"the recipient names the user to log in as; expected {_FORM}")
    if url.query or url.fragment:
        raise InvalidRecipient(f"no query or fragment in an AMQP recipient; expected {_FORM}")
    segments = url.path.split("/", 3)[1:]  # vhost, exchange, routing key (may hold "/")
    if len(segments) < 2:
        raise InvalidRecipient(f"the virtual host and the exchange are missing; expected {_FORM}")
    vhost, exchange = unquote(segments[0]) or "/", unquote(segments[1])
    routing_key = unquote(segments[2]) if len(segments) > 2 else ""
    if len(exchange.encode()) > 255 or len(routing_key.encode()) > 255:
        raise InvalidRecipient("an exchange name and a routing key have at most 255 bytes")
    if not exchange and not routing_key:
        raise InvalidRecipient("the default exchange (empty) needs a queue name as routing key")
    return Target(url.scheme, url.hostname, port or DEFAULT_PORTS[url.scheme],
                  unquote(url.username), vhost, exchange, routing_key)
