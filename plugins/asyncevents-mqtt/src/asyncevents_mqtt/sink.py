"""The MQTT sink: publish each delivery at QoS 1 (or 2) and wait for the broker's ack."""

from __future__ import annotations

import hashlib
import json
import ssl
import threading
from typing import ClassVar

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from asyncevents import (
    DeliveryRequest,
    DeliveryResult,
    InvalidRecipient,
    Settings,
    UnverifiedRecipient,
    check_address,
    cloudevent,
)
from asyncevents_mqtt.connection import BrokerRefused, Connection
from asyncevents_mqtt.recipient import Target, parse_recipient
from asyncevents_mqtt.settings import MqttSettings

__all__ = ["CONTENT_TYPE", "MqttSink", "classify"]

#: The MQTT 5 Content Type of every message: a structured-mode CloudEvent.
CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
_Key = tuple[str, str, int, str | None, str]


class MqttSink:
    """Publishes events to MQTT topics, at least once (QoS 1) or exactly once (QoS 2)."""

    name: ClassVar[str] = "mqtt"

    def __init__(self, settings: Settings, options: MqttSettings | None = None) -> None:
        self.settings = settings
        self.options = options if options is not None else MqttSettings.from_env()
        self._connections: dict[_Key, Connection] = {}
        self._opening: dict[_Key, threading.Lock] = {}
        self._lock = threading.Lock()

    def validate_recipient(self, recipient: str) -> None:
        """Raise ``InvalidRecipient`` unless ``recipient`` is ``mqtt://host[:port]/topic``
        on a broker the address guard lets through (``ASYNCEVENTS_ALLOWED_NETWORKS``)."""
        check_address(parse_recipient(recipient).host, self.settings)

    def deliver(self, request: DeliveryRequest) -> DeliveryResult:
        """Publish the CloudEvent to the topic; succeed once the broker acknowledges it."""
        try:
            target = parse_recipient(request.recipient)
        except InvalidRecipient as exc:
            return DeliveryResult.failed(f"invalid recipient: {exc}", retryable=False)
        body = json.dumps(cloudevent(request), separators=(",", ":"), ensure_ascii=False)
        key: _Key | None = None
        try:
            key, connection = self._connection(target, request.token)
            connection.publish(target.topic, body.encode(), target.qos,
                               self._properties(request, connection))
        except UnverifiedRecipient as exc:  # the name does not resolve (perhaps only now)
            return DeliveryResult.failed(str(exc))
        except InvalidRecipient as exc:
            return DeliveryResult.failed(f"recipient address refused: {exc}", retryable=False)
        except Exception as exc:
            if key is not None:
                self._drop_if_down(key)
            message, retryable = classify(exc, target)
            return DeliveryResult.failed(message.replace(request.token, "***"),
                                         retryable=retryable)
        return DeliveryResult.ok(response=json.dumps({"topic": target.topic, "qos": target.qos}))

    def close(self) -> None:
        """Disconnect from every broker."""
        with self._lock:
            connections, self._connections = list(self._connections.values()), {}
        for connection in connections:
            connection.close()

    def _properties(self, request: DeliveryRequest, connection: Connection) -> Properties | None:
        if connection.protocol != 5:
            return None  # MQTT 3.1.1 has no properties: the body says it all
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        properties.ContentType = CONTENT_TYPE
        properties.PayloadFormatIndicator = 1  # UTF-8 text
        properties.UserProperty = [("delivery_id", request.delivery_id)]
        return properties

    def _connection(self, target: Target, token: str) -> tuple[_Key, Connection]:
        # The token's digest, not the token, keys the cache: a rotated token connects anew.
        key = (target.scheme, target.host, target.port, target.user,
               hashlib.sha256(token.encode()).hexdigest())
        with self._lock:
            connection = self._connections.get(key)
            if connection is not None and connection.usable:
                return key, connection
            opening = self._opening.setdefault(key, threading.Lock())
        with opening:  # one thread connects; the others wait for its connection
            with self._lock:
                connection = self._connections.get(key)
            if connection is not None and connection.usable:
                return key, connection
            if connection is not None:
                connection.close()
            connection = Connection(target, token, self.options, self.settings)
            connection.open()
            with self._lock:
                self._connections[key] = connection
            return key, connection

    def _drop_if_down(self, key: _Key) -> None:
        with self._lock:
            connection = self._connections.get(key)
            if connection is None or connection.usable:
                return
            del self._connections[key]
        connection.close()


def classify(exc: BaseException, target: Target) -> tuple[str, bool]:
    """A failure's message and whether another attempt may succeed."""
    if isinstance(exc, BrokerRefused):
        return str(exc), exc.retryable
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"the TLS certificate of {target.broker} is not trusted: {exc.verify_message}", False
    if isinstance(exc, ValueError):  # paho refuses the topic or an oversized payload
        return f"paho refused the message: {exc}", False
    if isinstance(exc, TimeoutError):
        return str(exc) or f"no answer from {target.broker}", True
    # Connection refused, reset or down: worth another try.
    return f"{type(exc).__name__}: {exc}", True
