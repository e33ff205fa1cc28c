"""What the store holds: subscriptions, deliveries and their attempts."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

__all__ = ["SENSITIVE_HEADER_WORDS", "Attempt", "Delivery", "DeliveryStatus", "Signature",
           "Subscription", "is_secret_header", "recipient_origin", "shown_recipient"]

DeliveryStatus = Literal["pending", "retrying", "delivered", "dead"]
Signature = Literal["hmac", "ed25519"]

SENSITIVE_HEADER_WORDS = ("auth", "token", "key", "secret", "password", "cookie", "session",
                          "signature", "credential")
"""A header whose name contains one of these is shown as ``***`` (its value is a secret)."""


def is_secret_header(name: str) -> bool:
    """True for a header whose value is a secret: shown as ``***``, and dropped when the
    recipient moves to another host without it being given again."""
    return any(word in name.lower() for word in SENSITIVE_HEADER_WORDS)


def _shown_headers(headers: dict[str, str]) -> dict[str, str]:
    return {name: "***" if is_secret_header(name) else value for name, value in headers.items()}


def shown_recipient(recipient: str) -> str:
    """``recipient`` as it may be shown: the credentials of a URL (``user:pass@``) as ``***``.

    Every place that shows a recipient (API, console, CLI, search, trace,
    operational events) shows this; the stored recipient keeps them for delivery.
    """
    scheme, separator, rest = recipient.partition("://")
    if not separator:
        return recipient
    ends = [at for at in (rest.find(c) for c in "/?#") if at >= 0]
    end = min(ends, default=len(rest))
    authority = rest[:end]
    if "@" not in authority:
        return recipient
    return f"{scheme}://***@{authority.rsplit('@', 1)[1]}{rest[end:]}"


def recipient_origin(recipient: str) -> str:
    """Where a recipient sends to: ``scheme://host[:port]`` of a URL, else the recipient itself.

    Two recipients with one origin reach the same receiver; secret headers
    follow a recipient only within its origin. A host part that parsers read
    differently (a backslash: a path to browsers, user info to RFC 3986) is
    its own origin, so a doubtful change always counts as a move.
    """
    scheme, separator, rest = recipient.strip().partition("://")
    if not separator:
        return recipient
    ends = [at for at in (rest.find(c) for c in "/?#") if at >= 0]
    authority = rest[:min(ends, default=len(rest))]
    if "\\" in authority:
        return recipient
    authority = authority.rsplit("@", 1)[-1].lower()
    scheme = scheme.lower()
    default = {"http": ":80", "https": ":443"}.get(scheme)
    if default and authority.endswith(default):
        authority = authority[:-len(default)]
    return f"{scheme}://{authority}"


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
    #: Deliveries at most per second (``10/s``) or per minute (``30/m``), across workers.
    rate: str | None = None
    #: Deliveries in flight at most, across every worker.
    max_in_flight: int | None = None
    #: A ``data.`` path: deliveries with the same value go out one at a time, in order.
    ordering_key: str | None = None
    signature: Signature = "hmac"
    #: Sent with every delivery (never overriding the signature or content headers).
    headers: dict[str, str] = field(default_factory=dict)
    #: Hours failing without a success before the subscription is disabled (None: setting).
    disable_after: float | None = None
    #: ``whpk_...``: what receivers verify ``ed25519`` signatures with.
    public_key: str | None = None
    #: ``whsk_...``: the Ed25519 private key (never shown).
    signing_key: str = field(default="", repr=False)
    #: The token replaced by a rotation, still signing until ``previous_token_until``.
    previous_token: str = field(default="", repr=False)
    previous_token_until: datetime | None = None
    #: Deleted (soft): its deliveries end dead; a disabled one's wait for it to be enabled.
    deleted: bool = False

    @property
    def rate_per_second(self) -> float | None:
        """The rate limit in deliveries per second (None: no limit)."""
        if not self.rate:
            return None
        number, _, unit = self.rate.partition("/")
        return float(number) / (60.0 if unit == "m" else 1.0)

    def public(self) -> dict[str, Any]:
        """Every field but the secrets (tokens, private key, secret header values), JSON-ready."""
        return {
            "id": self.id,
            "event_name": self.event_name,
            "sink": self.sink,
            "recipient": shown_recipient(self.recipient),
            "active": self.active,
            "filter": self.filter,
            "retry_policy": self.retry_policy,
            "metadata": self.metadata,
            "rate": self.rate,
            "max_in_flight": self.max_in_flight,
            "ordering_key": self.ordering_key,
            "signature": self.signature,
            "public_key": self.public_key,
            "headers": _shown_headers(self.headers),
            "disable_after": self.disable_after,
            "rotation_grace_until": _iso(self.previous_token_until),
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
            "recipient": shown_recipient(self.recipient),
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
