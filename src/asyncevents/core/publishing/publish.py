"""Publish: check an event, then hand it to the trigger queue (now or later)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from asyncevents.core.clock import utcnow
from asyncevents.core.events.catalog import Catalog
from asyncevents.core.events.routing import Router
from asyncevents.core.messages import TriggerMessage
from asyncevents.core.plugins import Plugins
from asyncevents.core.retry.base import RetryManagement
from asyncevents.core.settings import Settings
from asyncevents.core.transport import Transport
from asyncevents.errors import InvalidPayload

__all__ = ["Publisher", "check_payload"]


def check_payload(data: Any, limit: int) -> dict[str, Any]:
    """Return ``data`` as a dict, or raise ``InvalidPayload`` saying what is wrong."""
    if not isinstance(data, Mapping):
        raise InvalidPayload(f"event data must be a JSON object, not {type(data).__name__}")
    try:
        encoded = json.dumps(data, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidPayload(f"event data is not JSON-serializable: {exc}") from None
    size = len(encoded.encode())
    if size > limit:
        raise InvalidPayload(
            f"event data is {size} bytes, over the {limit}-byte limit (max_payload_bytes)"
        )
    return dict(data)


class Publisher:
    """Turns ``publish(name, data)`` into a trigger message.

    Publishing touches only the transport: the RetryManagement (which may
    need the store) is asked for only when an event is published with a delay.
    """

    def __init__(self, settings: Settings, catalog: Catalog, transport: Transport,
                 retries: Callable[[], RetryManagement], plugins: Plugins) -> None:
        self.settings = settings
        self.plugins = plugins
        self.catalog = catalog
        self.transport = transport
        self.retries = retries
        self.router = Router(settings.routing)  # the trigger's queue, by event name

    def message(self, name: str, data: Any) -> TriggerMessage:
        """Check event ``name`` and its ``data``; the trigger message to send (not sent)."""
        self.catalog.check_publish(name)
        payload = check_payload(data, self.settings.max_payload_bytes)
        self.catalog.check_data(name, payload)
        return TriggerMessage(str(uuid.uuid4()), name, payload, utcnow(),
                              queue=self.router.trigger_queue(name))

    def publish_many(self, events: Iterable[tuple[str, Any]]) -> list[str]:
        """Publish several events at once; return their ids.

        Every event is checked first, so one bad event publishes nothing. On
        RabbitMQ all confirms are awaited together: far faster than a loop.
        """
        messages: list[TriggerMessage] = []
        now = utcnow()
        for name, data in events:
            self.catalog.check_publish(name)
            payload = check_payload(data, self.settings.max_payload_bytes)
            self.catalog.check_data(name, payload)
            messages.append(TriggerMessage(str(uuid.uuid4()), name, payload, now,
                                           queue=self.router.trigger_queue(name)))
        # Through the publish_messages hook (a producer span per event when tracing is on).
        self.plugins.publish(messages, self.transport.enqueue_many)
        return [message.event_id for message in messages]

    def publish(self, name: str, data: Any, *, delay: float | None = None) -> str:
        """Publish one event; return its id. ``delay`` holds it back that many seconds."""
        self.catalog.check_publish(name)
        payload = check_payload(data, self.settings.max_payload_bytes)
        self.catalog.check_data(name, payload)
        if delay is not None and delay < 0:
            raise InvalidPayload(f"delay must be zero or more seconds, not {delay}")
        message = TriggerMessage(str(uuid.uuid4()), name, payload, utcnow(),
                                 queue=self.router.trigger_queue(name))

        def send(messages: Sequence[TriggerMessage]) -> None:
            if delay:
                self.retries().schedule(messages[0], delay)
            else:
                self.transport.enqueue(messages[0])

        # Through the publish_messages hook (a producer span when tracing is on).
        self.plugins.publish([message], send)
        return message.event_id
