"""The bodies that travel through the queues.

The death count travels in the body (``deaths``), never in RabbitMQ's
``x-death`` header, which RabbitMQ 3.13+ no longer counts on republish.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypedDict

__all__ = ["DeliverMessage", "TriggerMessage", "deliver_message", "trigger_message"]


class TriggerMessage(TypedDict):
    """An event on its way to the dispatcher."""

    event_id: str
    name: str
    data: dict[str, Any]
    published_at: str
    deaths: int


class DeliverMessage(TypedDict):
    """One delivery on its way to the deliverer."""

    delivery_id: str
    deaths: int
    replay: bool


def trigger_message(event_id: str, name: str, data: dict[str, Any], published_at: datetime,
                    deaths: int = 0) -> TriggerMessage:
    """Build a trigger body."""
    return {"event_id": event_id, "name": name, "data": data,
            "published_at": published_at.isoformat(), "deaths": deaths}


def deliver_message(delivery_id: str, deaths: int = 0, replay: bool = False) -> DeliverMessage:
    """Build a delivery body."""
    return {"delivery_id": delivery_id, "deaths": deaths, "replay": replay}
