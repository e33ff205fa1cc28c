"""The messages that travel through the queues: one type per route.

A message is decoded and checked once, where it leaves the transport
(:func:`decode`); past that point handlers get a typed, valid object. The
death count travels in the message (``deaths``), never in RabbitMQ's
``x-death`` header, which RabbitMQ 3.13+ no longer counts on republish.

The wire format is a JSON object per route::

    trigger  {"event_id", "name", "data", "published_at", "deaths"}
    deliver  {"delivery_id", "deaths", "replay"}

Either may also carry the W3C trace context of the span that sent it
(``traceparent``, ``tracestate``: see :mod:`asyncevents.features.otel`), left out
of the body when there is none, so workers of either version read both.

``queue`` is the named queue a message travels on (:mod:`.routing`), also left
out for ``default``: a message without one is a ``default`` one, and the wire
format of an installation without ``[routing]`` is unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, ClassVar, Literal, TypeAlias

__all__ = [
    "DEFAULT_QUEUE",
    "ROUTES",
    "DeliverMessage",
    "MalformedMessage",
    "Message",
    "Route",
    "TriggerMessage",
    "as_route",
    "decode",
]

#: The queues a message can travel on.
Route = Literal["trigger", "deliver"]
#: Every route, in the order a worker consumes them.
ROUTES: tuple[Route, ...] = ("trigger", "deliver")
#: The queue of every message that no ``[routing]`` rule sends elsewhere.
DEFAULT_QUEUE = "default"


class MalformedMessage(ValueError):
    """A body that can never be handled on its route (it is dropped, with an error logged)."""


@dataclass(frozen=True, slots=True)
class TriggerMessage:
    """An event on its way to the dispatcher."""

    event_id: str
    name: str
    data: dict[str, Any]
    published_at: datetime
    deaths: int = 0
    traceparent: str | None = None
    tracestate: str | None = None
    queue: str = DEFAULT_QUEUE

    route: ClassVar[Route] = "trigger"

    def body(self) -> dict[str, Any]:
        """The JSON object sent on the wire."""
        body: dict[str, Any] = {"event_id": self.event_id, "name": self.name,
                                "data": self.data,
                                "published_at": self.published_at.isoformat(),
                                "deaths": self.deaths}
        if self.queue != DEFAULT_QUEUE:
            body["queue"] = self.queue
        return _with_trace(body, self.traceparent, self.tracestate)

    def died(self) -> TriggerMessage:
        """This message after one more failure."""
        return replace(self, deaths=self.deaths + 1)


@dataclass(frozen=True, slots=True)
class DeliverMessage:
    """One delivery on its way to the deliverer."""

    delivery_id: str
    deaths: int = 0
    replay: bool = False
    traceparent: str | None = None
    tracestate: str | None = None
    queue: str = DEFAULT_QUEUE

    route: ClassVar[Route] = "deliver"

    def body(self) -> dict[str, Any]:
        """The JSON object sent on the wire."""
        body: dict[str, Any] = {"delivery_id": self.delivery_id, "deaths": self.deaths,
                                "replay": self.replay}
        if self.queue != DEFAULT_QUEUE:
            body["queue"] = self.queue
        return _with_trace(body, self.traceparent, self.tracestate)

    def with_deaths(self, deaths: int) -> DeliverMessage:
        """This message carrying ``deaths`` failures."""
        return replace(self, deaths=deaths)


#: Any message.
Message: TypeAlias = TriggerMessage | DeliverMessage


def as_route(name: str) -> Route:
    """``name`` as a route, or ``MalformedMessage``."""
    for route in ROUTES:
        if route == name:
            return route
    raise MalformedMessage(f"unknown route {name!r}")


def _with_trace(body: dict[str, Any], traceparent: str | None,
                tracestate: str | None) -> dict[str, Any]:
    if traceparent is not None:
        body["traceparent"] = traceparent
        if tracestate:
            body["tracestate"] = tracestate
    return body


def _trace(body: dict[str, Any], key: str) -> str | None:
    # The trace context is advice: a wrong one is ignored, never a reason to
    # drop the event (the tracer checks the format when it reads it).
    value = body.get(key)
    return value if isinstance(value, str) and len(value) <= 512 else None


def _field(body: dict[str, Any], key: str, kind: type) -> Any:
    value = body.get(key)
    # bool is an int subclass: a "deaths": true is as wrong as a string.
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise MalformedMessage(f"field {key!r} is missing or not a {kind.__name__}")
    return value


def decode(route: Route, body: Any, queue: str | None = None) -> Message:
    """The message ``body`` carries on ``route``, or ``MalformedMessage`` saying why not.

    ``queue``, the named queue it was taken from, wins over the body's own.
    """
    if not isinstance(body, dict):
        raise MalformedMessage(f"the body is a JSON {type(body).__name__}, not an object")
    if queue is None:
        queue = body.get("queue", DEFAULT_QUEUE)
        if not isinstance(queue, str):
            raise MalformedMessage("field 'queue' is not a str")
    if route == "deliver":
        replay = body.get("replay", False)
        return DeliverMessage(_field(body, "delivery_id", str), _field(body, "deaths", int),
                              replay if isinstance(replay, bool) else False,
                              _trace(body, "traceparent"), _trace(body, "tracestate"),
                              queue=queue)
    published = _field(body, "published_at", str)
    try:
        published_at = datetime.fromisoformat(published)
    except ValueError:
        raise MalformedMessage("field 'published_at' is not an ISO 8601 time") from None
    return TriggerMessage(_field(body, "event_id", str), _field(body, "name", str),
                          _field(body, "data", dict), published_at,
                          _field(body, "deaths", int), _trace(body, "traceparent"),
                          _trace(body, "tracestate"), queue=queue)
