"""MQTT recipients: ``mqtt://[user@]host[:port]/topic/path[?qos=2]`` (``mqtts://`` for TLS)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit

from asyncevents import InvalidRecipient

__all__ = ["Target", "parse_recipient"]

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
_FORM = "mqtt://[user@]host[:port]/topic/path[?qos=1|2] (or mqtts://…)"


@dataclass(frozen=True)
class Target:
    """A recipient read: the broker, the topic and the QoS to publish with."""

    scheme: str
    host: str
    port: int
    topic: str
    qos: int = 1
    user: str | None = None

    @property
    def tls(self) -> bool:
        """Whether the broker is reached over TLS (``mqtts://``)."""
        return self.scheme == "mqtts"

    @property
    def broker(self) -> str:
        """``scheme://host:port``, without credentials, for messages."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def parse_recipient(recipient: str) -> Target:
    """Read an MQTT recipient; ``InvalidRecipient`` says what is wrong with it."""
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
    if "#" in recipient:  # a URL fragment, or the multi-level wildcard
        raise InvalidRecipient("a topic to publish to has no wildcards (+, #)")
    query = dict(parse_qsl(url.query, keep_blank_values=True))
    if set(query) - {"qos"} or query.get("qos", "1") not in ("1", "2"):
        raise InvalidRecipient("the only query parameter is qos, 1 (the default) or 2")
    topic = unquote(url.path[1:])
    if not topic or len(topic.encode()) > 65535:
        raise InvalidRecipient("the topic is missing (or over 65535 bytes): "
                               "mqtt://host/topic/path")
    if any(c in topic for c in "+#\x00"):
        raise InvalidRecipient("a topic to publish to has no wildcards (+, #)")
    if topic.startswith("$"):
        raise InvalidRecipient("topics starting with $ belong to the broker")
    user = unquote(url.username) if url.username else None
    return Target(url.scheme, url.hostname, port or DEFAULT_PORTS[url.scheme], topic,
                  int(query.get("qos", "1")), user)
