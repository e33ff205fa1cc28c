"""What the store holds: subscriptions, deliveries and their attempts."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

__all__ = ["Attempt", "Delivery", "DeliveryStatus", "Subscription"]

DeliveryStatus = Literal["pending", "retrying", "delivered", "dead"]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


@dataclass(frozen=True)
class Subscription:
    """A recipient that wants events matching ``event_name`` through ``sink``."""

    id: str
    event_name: str
    sink: str
    recipient: str
    token: str = field(repr=False)
    active: bool
    filter: str | None
    retry_policy: dict[str, Any] | None
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime

    def public(self) -> dict[str, Any]:
        """Every field but the verification token, JSON-ready."""
        return {
            "id": self.id,
            "event_name": self.event_name,
            "sink": self.sink,
            "recipient": self.recipient,
            "active": self.active,
            "filter": self.filter,
            "retry_policy": self.retry_policy,
            "metadata": self.metadata,
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
        }


@dataclass(frozen=True)
class Delivery:
    """One event's copy for one subscription, and where it stands."""

    id: str
    event_id: str
    event_name: str
    subscription_id: str
    sink: str
    recipient: str
    status: DeliveryStatus
    attempts: int
    payload: dict[str, Any]
    published_at: datetime
    created_at: datetime
    updated_at: datetime
    next_attempt_at: datetime | None

    @property
    def success(self) -> bool:
        """True once delivered."""
        return self.status == "delivered"

    def public(self) -> dict[str, Any]:
        """The fields search and trace print, JSON-ready."""
        return {
            "uuid": self.id,
            "event_id": self.event_id,
            "event_name": self.event_name,
            "subscription_id": self.subscription_id,
            "sink": self.sink,
            "recipient": self.recipient,
            "status": self.status,
            "success": self.success,
            "attempts": self.attempts,
            "created": _iso(self.created_at),
            "updated": _iso(self.updated_at),
            "published_at": _iso(self.published_at),
            "next_attempt_at": _iso(self.next_attempt_at),
            "data": self.payload,
        }


@dataclass(frozen=True)
class Attempt:
    """One try at delivering, successful or not."""

    delivery_id: str
    number: int
    started_at: datetime
    duration_ms: float
    success: bool
    status_code: int | None
    response: str
    error: str | None
    replay: bool = False

    def public(self) -> dict[str, Any]:
        """JSON-ready, as ``asyncevents trace`` prints it."""
        return {
            "number": self.number,
            "started_at": _iso(self.started_at),
            "success": self.success,
            "status_code": self.status_code,
            "duration_ms": round(self.duration_ms, 3),
            "response": self.response,
            "error": self.error,
            "replay": self.replay,
        }
