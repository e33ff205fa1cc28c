"""The spans of an event: publish, dispatch, and each attempt at each delivery.

One trace per event, carried from process to process in the messages
themselves (W3C ``traceparent``/``tracestate`` fields, see
:mod:`asyncevents.core.messages`)::

    publish sales.order.created         PRODUCER  (the application; child of its current span)
    └─ dispatch sales.order.created     CONSUMER  (a worker: resolve, match, fan out)
       ├─ deliver sales.order.created   CLIENT    (attempt 1 at delivery A)
       ├─ deliver sales.order.created   CLIENT    (attempt 1 at delivery B)
       └─ deliver sales.order.created   CLIENT    (attempt 2 at delivery B, after its back-off)

The trigger message handed to dispatch carries the dispatch span's context,
so what dispatch sends on (each delivery's message, a retried trigger)
continues the trace from there; a retried delivery keeps its message's
context. The attempt spans come from the ``before_delivery`` /
``after_delivery`` hooks (:class:`AttemptSpans`, registered on the App's
plugins): an attempt span starts when the sink is called and ends once the
attempt's outcome is recorded.

Imported only when tracing is on (:func:`asyncevents.core.otel.configure`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, TypeVar

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from asyncevents.core.hookspecs import hookimpl
from asyncevents.core.messages import TriggerMessage
from asyncevents.core.otel.resource import resource, version
from asyncevents.core.sink import DeliveryRequest, DeliveryResult

if TYPE_CHECKING:
    from asyncevents.core.delivery.deliver import Job

__all__ = ["AttemptSpans", "Dispatching", "Tracing"]

_M = TypeVar("_M", bound=TriggerMessage)
_PROPAGATOR = TraceContextTextMapPropagator()
#: Deliveries (and open attempt spans) remembered at most; past that the oldest
#: go (an attempt whose outcome was never recorded: its worker requeued it).
_REMEMBERED = 10_000
_ERROR_LIMIT = 256


def _exporter(name: str) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()  # endpoint, headers, timeout: from the OTEL_* variables


def _carrier(span: Span) -> dict[str, str]:
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
    return carrier


def _context(traceparent: str | None, tracestate: str | None) -> Context | None:
    if traceparent is None:
        return None
    carrier = {"traceparent": traceparent}
    if tracestate:
        carrier["tracestate"] = tracestate
    # A malformed traceparent gives an empty context: the span starts a new trace.
    return _PROPAGATOR.extract(carrier)


def _failed(span: Span, exc: BaseException) -> None:
    span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"[:_ERROR_LIMIT]))


@dataclass
class Dispatching:
    """The dispatch spans of a batch of events, and the messages re-parented on them."""

    messages: list[TriggerMessage]
    spans: list[Span]

    def end(self, error: BaseException | None = None) -> None:
        """End every span of the batch (failed with ``error`` when there is one)."""
        for span in self.spans:
            if error is not None:
                _failed(span, error)
            span.end()


class Tracing:
    """The tracer of one process and what it knows of the attempts under way."""

    def __init__(self, tracer: Tracer, provider: TracerProvider | None = None) -> None:
        self.tracer = tracer
        #: The provider made here (None when the application's own is used).
        self.provider = provider
        self.plugin = AttemptSpans(self)
        self._lock = threading.Lock()
        self._expected: OrderedDict[str, tuple[str | None, str | None, str | None]] = \
            OrderedDict()
        self._open: OrderedDict[tuple[str, int], Span] = OrderedDict()

    @classmethod
    def from_environment(cls, exporters: Sequence[str]) -> Tracing:
        """The application's tracer provider if it set one up, else one exporting to ``exporters``.

        asyncevents's own provider is not made the global one: the
        application's OpenTelemetry set-up, if any, stays its own.
        """
        found = trace.get_tracer_provider()
        if isinstance(found, TracerProvider):
            return cls(found.get_tracer("asyncevents", version()))
        provider = TracerProvider(resource=resource())  # flushed and shut down at exit
        for name in exporters:
            provider.add_span_processor(BatchSpanProcessor(_exporter(name)))
        return cls(provider.get_tracer("asyncevents", version()), provider)

    # ---------------------------------------------------------------- publish

    def publish(self, messages: Sequence[_M], send: Callable[[Sequence[_M]], None]
                ) -> list[_M]:
        """``send`` the messages, each in a producer span whose context it carries."""
        spans: list[Span] = []
        sent: list[_M] = []
        for message in messages:
            span = self.tracer.start_span(
                f"publish {message.name}", kind=SpanKind.PRODUCER,
                attributes={"messaging.operation.type": "send",
                            "messaging.destination.name": message.route,
                            "messaging.message.id": message.event_id,
                            "asyncevents.event.id": message.event_id,
                            "asyncevents.event.name": message.name})
            carrier = _carrier(span)
            spans.append(span)
            sent.append(replace(message, traceparent=carrier.get("traceparent"),
                                tracestate=carrier.get("tracestate")))
        try:
            send(sent)
        except BaseException as exc:
            for span in spans:
                _failed(span, exc)
                span.end()
            raise
        for span in spans:
            span.end()
        return sent

    # ---------------------------------------------------------------- dispatch

    def dispatching(self, messages: Sequence[TriggerMessage]) -> Dispatching:
        """A consumer span per event, child of the context its message carries."""
        spans: list[Span] = []
        carried: list[TriggerMessage] = []
        for message in messages:
            attributes: dict[str, str | int] = {
                "messaging.operation.type": "process",
                "messaging.destination.name": message.route,
                "messaging.message.id": message.event_id,
                "asyncevents.event.id": message.event_id,
                "asyncevents.event.name": message.name}
            if message.deaths:
                attributes["asyncevents.deaths"] = message.deaths
            span = self.tracer.start_span(
                f"dispatch {message.name}", kind=SpanKind.CONSUMER,
                context=_context(message.traceparent, message.tracestate),
                attributes=attributes)
            carrier = _carrier(span)
            spans.append(span)
            carried.append(replace(message, traceparent=carrier.get("traceparent"),
                                   tracestate=carrier.get("tracestate")))
        return Dispatching(carried, spans)

    # ---------------------------------------------------------------- attempts

    def expect(self, jobs: Iterable[Job]) -> None:
        """Remember the context (and sink) of deliveries about to be attempted.

        The delivery hooks get a ``DeliveryRequest``, which has neither: they
        find them here by delivery id.
        """
        with self._lock:
            for job in jobs:
                message = job.message
                sink = job.subscription.sink if job.subscription is not None else None
                self._expected[job.delivery.id] = (message.traceparent, message.tracestate,
                                                   sink)
                self._expected.move_to_end(job.delivery.id)
            while len(self._expected) > _REMEMBERED:
                self._expected.popitem(last=False)

    def attempt_started(self, request: DeliveryRequest) -> None:
        """Open the span of one attempt (the sink is about to be called)."""
        span = self._start(request)
        key = (request.delivery_id, request.attempt)
        with self._lock:
            self._open[key] = span
            stale = []
            while len(self._open) > _REMEMBERED:
                stale.append(self._open.popitem(last=False)[1])
        for old in stale:
            old.set_status(Status(StatusCode.ERROR, "the attempt's outcome was not recorded"))
            old.end()

    def attempt_done(self, request: DeliveryRequest, result: DeliveryResult) -> None:
        """Close the span of one attempt with its outcome."""
        with self._lock:
            span = self._open.pop((request.delivery_id, request.attempt), None)
        if span is None:  # decided without calling the sink (it is not installed)
            span = self._start(request)
        if result.status_code is not None:
            span.set_attribute("http.response.status_code", result.status_code)
        if result.success:
            span.set_attribute("asyncevents.outcome", "success")
        else:
            outcome = "retryable_failure" if result.retryable else "permanent_failure"
            span.set_attribute("asyncevents.outcome", outcome)
            span.set_attribute("error.type", str(result.status_code or "sink_error"))
            span.set_status(Status(StatusCode.ERROR, (result.error or outcome)[:_ERROR_LIMIT]))
        span.end()

    def _start(self, request: DeliveryRequest) -> Span:
        with self._lock:
            traceparent, tracestate, sink = self._expected.get(request.delivery_id,
                                                               (None, None, None))
        attributes: dict[str, str | int] = {
            "asyncevents.event.id": request.event_id,
            "asyncevents.event.name": request.event_name,
            "asyncevents.delivery.id": request.delivery_id,
            "asyncevents.subscription.id": request.subscription_id,
            "asyncevents.attempt": request.attempt}
        if sink is not None:
            attributes["asyncevents.sink"] = sink
        return self.tracer.start_span(f"deliver {request.event_name}", kind=SpanKind.CLIENT,
                                      context=_context(traceparent, tracestate),
                                      attributes=attributes)


class AttemptSpans:
    """The plugin that turns the delivery hooks into attempt spans."""

    def __init__(self, tracing: Tracing) -> None:
        self.tracing = tracing

    @hookimpl
    def before_delivery(self, request: DeliveryRequest) -> None:
        """Start the attempt's span."""
        self.tracing.attempt_started(request)

    @hookimpl
    def after_delivery(self, request: DeliveryRequest, result: DeliveryResult) -> None:
        """End the attempt's span with its outcome."""
        self.tracing.attempt_done(request, result)
