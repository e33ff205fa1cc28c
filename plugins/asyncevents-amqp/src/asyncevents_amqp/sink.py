"""The AMQP sink: publish each delivery to an exchange, with publisher confirms."""

from __future__ import annotations

import hashlib
import json
import socket
from typing import Any, ClassVar

import amqp.exceptions

from asyncevents import (
    DeliveryRequest,
    DeliveryResult,
    InvalidRecipient,
    Settings,
    UnverifiedRecipient,
    check_address,
    cloudevent,
)
from asyncevents_amqp.pool import PublisherPool, Unroutable
from asyncevents_amqp.recipient import Target, parse_recipient
from asyncevents_amqp.settings import AmqpSettings

__all__ = ["CONTENT_TYPE", "AmqpSink", "classify", "message_headers"]

#: The content type of every message: a structured-mode CloudEvent.
CONTENT_TYPE = "application/cloudevents+json"
# AMQP reply codes no retry can fix: no route, content too large, invalid path, access
# refused, not found, precondition failed, not allowed (an unknown or forbidden vhost).
_PERMANENT_CODES = frozenset({311, 312, 402, 403, 404, 406, 530})
# Errors of the socket under a connection: another try on a fresh connection may pass.
_CONNECTION_ERRORS = (OSError, amqp.exceptions.RecoverableConnectionError)


def message_headers(request: DeliveryRequest) -> dict[str, str]:
    """The CloudEvent's attributes as message headers, named as the AMQP binding names them."""
    event = cloudevent(request)
    return {f"cloudEvents_{name}": event[name]
            for name in ("specversion", "id", "source", "type", "time")}


class AmqpSink:
    """Publishes events to AMQP 0-9-1 exchanges (RabbitMQ), waiting for the broker's confirm."""

    name: ClassVar[str] = "amqp"

    def __init__(self, settings: Settings, options: AmqpSettings | None = None) -> None:
        self.settings = settings
        self.options = options if options is not None else AmqpSettings.from_env()
        self._pool = PublisherPool(self.options, settings)

    def validate_recipient(self, recipient: str) -> None:
        """Raise ``InvalidRecipient`` unless ``recipient`` reads as an AMQP exchange and key
        on a broker the address guard lets through (``ASYNCEVENTS_ALLOWED_NETWORKS``)."""
        check_address(parse_recipient(recipient).host, self.settings)

    def deliver(self, request: DeliveryRequest) -> DeliveryResult:
        """Publish the CloudEvent; succeed once the broker confirms it."""
        try:
            target = parse_recipient(request.recipient)
        except InvalidRecipient as exc:
            return DeliveryResult.failed(f"invalid recipient: {exc}", retryable=False)
        body = json.dumps(cloudevent(request), separators=(",", ":"), ensure_ascii=False)
        properties: dict[str, Any] = {
            "content_type": CONTENT_TYPE, "content_encoding": "utf-8",
            "delivery_mode": 2, "message_id": request.delivery_id, "type": request.event_name,
            "app_id": "asyncevents",
        }
        key = hashlib.sha256(request.token.encode()).hexdigest()
        for attempt in (1, 2):
            reused = False
            try:
                with self._pool.borrow(target, request.token, key) as publisher:
                    reused = publisher.uses > 0
                    publisher.publish(body.encode(), properties, message_headers(request))
            except UnverifiedRecipient as exc:  # the name does not resolve (perhaps only now)
                return DeliveryResult.failed(str(exc))
            except InvalidRecipient as exc:
                return DeliveryResult.failed(f"recipient address refused: {exc}",
                                             retryable=False)
            except _CONNECTION_ERRORS as exc:
                if reused and attempt == 1:
                    continue  # an idle connection the broker or a firewall closed: once more
                failure: BaseException = exc
            except Exception as exc:
                failure = exc
            else:
                return DeliveryResult.ok(response=json.dumps(
                    {"exchange": target.exchange, "routing_key": target.routing_key}))
            break
        message, retryable = classify(failure, target, self.options.timeout)
        return DeliveryResult.failed(message.replace(request.token, "***"), retryable=retryable)

    def close(self) -> None:
        """Close every pooled connection."""
        self._pool.close()


def classify(exc: BaseException, target: Target, timeout: float) -> tuple[str, bool]:
    """A failure's message and whether another attempt may succeed."""
    if isinstance(exc, Unroutable):
        return str(exc), False
    if isinstance(exc, amqp.exceptions.MessageNacked):
        return "the broker nacked the message (a full queue rejecting publishes?)", True
    if isinstance(exc, amqp.exceptions.AMQPError):
        code = int(exc.code or 0)
        text = str(exc.reply_text or exc.message or type(exc).__name__)
        if code == 403 and "login" in text.lower():
            return f"{target.broker} refused the login of user {target.user!r}", False
        return f"the broker refused: {code} {text}", code not in _PERMANENT_CODES
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return f"no answer from {target.broker} within {timeout:g}s", True
    # Connection refused or reset, DNS failures: worth another try.
    return f"{type(exc).__name__}: {exc}", True
