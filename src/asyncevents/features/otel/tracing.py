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
context. The attempt spans are made by the pipeline's middleware
(:mod:`.middleware`) once a batch's attempts are recorded, each timed from
when its sink was called to when it answered.

Imported only when tracing is on (:func:`asyncevents.features.otel.configure`).
"""

from __future__ import annotations

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

from asyncevents.core.messages import TriggerMessage
from asyncevents.features.otel.resource import resource, version

if TYPE_CHECKING:
    from asyncevents.core.pipeline import Job, Settled

__all__ = ["Dispatching", "Tracing"]

_M = TypeVar("_M", bound=TriggerMessage)
_PROPAGATOR = TraceContextTextMapPropagator()
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

    def attempts(self, jobs: Iterable[Job], settled: Iterable[Settled]) -> None:
        """A span per recorded attempt, child of its delivery message's context, timed
        from when its sink was called to when it answered."""
        carried = {job.delivery.id: job.message for job in jobs}
        for done in settled:
            message = carried.get(done.delivery.id)
            attributes: dict[str, str | int] = {
                "asyncevents.event.id": done.delivery.event_id,
                "asyncevents.event.name": done.delivery.event_name,
                "asyncevents.delivery.id": done.delivery.id,
                "asyncevents.subscription.id": done.subscription.id,
                "asyncevents.attempt": done.number,
                "asyncevents.sink": done.subscription.sink}
            start = int(done.started.timestamp() * 1e9)
            span = self.tracer.start_span(
                f"deliver {done.delivery.event_name}", kind=SpanKind.CLIENT,
                context=_context(message.traceparent, message.tracestate) if message else None,
                attributes=attributes, start_time=start)
            if done.status_code is not None:
                span.set_attribute("http.response.status_code", done.status_code)
            if done.success:
                span.set_attribute("asyncevents.outcome", "success")
            else:
                outcome = "retryable_failure" if done.retryable else "permanent_failure"
                span.set_attribute("asyncevents.outcome", outcome)
                span.set_attribute("error.type", str(done.status_code or "sink_error"))
                span.set_status(Status(StatusCode.ERROR, (done.error or outcome)[:_ERROR_LIMIT]))
            span.end(end_time=start + int(done.duration_ms * 1e6))
