"""The sink extension point: what a sink receives and what it answers.

A sink is a small class, registered by a plugin's ``register_sinks`` hook::

    class Sink(Protocol):
        name: ClassVar[str]
        def validate_recipient(self, recipient: str) -> None: ...
        def deliver(self, request: DeliveryRequest) -> DeliveryResult: ...
        def close(self) -> None: ...

The worker builds one instance per sink name with ``SinkClass(settings)`` and
reuses it for every delivery, from several threads at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

if TYPE_CHECKING:
    from asyncevents.core.settings import Settings

__all__ = ["DeliveryRequest", "DeliveryResult", "Sink", "SinkFactory", "cloudevent"]


@dataclass(frozen=True)
class DeliveryRequest:
    """One copy of an event on its way to one subscription."""

    delivery_id: str
    event_id: str
    event_name: str
    subscription_id: str
    recipient: str
    token: str = field(repr=False)
    payload: dict[str, Any]
    published_at: datetime
    attempt: int = 1
    source: str = "asyncevents"
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DeliveryResult:
    """What happened when a sink tried to deliver.

    ``retryable`` matters only when ``success`` is false; ``retry_after``
    (seconds) overrides the back-off; ``disable_subscription`` asks the core to
    switch the subscription off (HTTP ``410 Gone``).
    """

    success: bool
    retryable: bool = True
    retry_after: float | None = None
    status_code: int | None = None
    response: str = ""
    error: str | None = None
    disable_subscription: bool = False

    @classmethod
    def ok(cls, status_code: int | None = None, response: str = "") -> DeliveryResult:
        """A successful delivery."""
        return cls(success=True, retryable=False, status_code=status_code, response=response)

    @classmethod
    def failed(
        cls, error: str, *, retryable: bool = True, retry_after: float | None = None,
        status_code: int | None = None, response: str = "", disable_subscription: bool = False,
    ) -> DeliveryResult:
        """A failed delivery, retryable unless told otherwise."""
        return cls(
            success=False, retryable=retryable, retry_after=retry_after,
            status_code=status_code, response=response, error=error,
            disable_subscription=disable_subscription,
        )


@runtime_checkable
class Sink(Protocol):
    """A destination kind: HTTP, EventBridge, or anything a plugin adds."""

    name: ClassVar[str]

    def validate_recipient(self, recipient: str) -> None:
        """Raise ``InvalidRecipient`` when ``recipient`` cannot be delivered to."""

    def deliver(self, request: DeliveryRequest) -> DeliveryResult:
        """Deliver one copy; raise ``RetryableSinkError`` / ``PermanentSinkError`` or answer."""

    def close(self) -> None:
        """Release clients and connections."""


#: What ``register_sinks`` registers: a class (or any callable) taking the settings.
SinkFactory = Callable[["Settings"], Sink]


def cloudevent(request: DeliveryRequest) -> dict[str, Any]:
    """The CloudEvents 1.0 structured-mode document for ``request``."""
    published = request.published_at.astimezone(UTC)
    return {
        "specversion": "1.0",
        "id": request.event_id,
        "source": request.source,
        "type": request.event_name,
        "time": published.isoformat().replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        "data": request.payload,
    }

