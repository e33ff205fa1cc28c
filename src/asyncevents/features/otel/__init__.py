"""OpenTelemetry: traces and metrics over OTLP, off unless the standard variables ask.

With the ``otel`` extra installed (``pip install 'asyncevents[otel]'``) and
an ``OTEL_*`` variable naming where to send them, a trace follows each event
from ``publish`` through its dispatch to every attempt at each delivery, and
the metrics of ``/metrics`` are exported through OTLP as well. A signal is on
when its endpoint is set (``OTEL_EXPORTER_OTLP_ENDPOINT``, or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` / ``..._METRICS_ENDPOINT``) or its
exporter is named (``OTEL_TRACES_EXPORTER`` / ``OTEL_METRICS_EXPORTER``:
``otlp`` or ``console``; ``none`` turns it off); ``OTEL_SDK_DISABLED=true``
turns both off. The SDK itself reads the rest (headers, timeouts,
``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``, the batch sizes).

Unlike the SDK's own default (OTLP to localhost), nothing is sent until a
variable says where: an installation that sets none gets no exporter, no
import of ``opentelemetry`` and no work on the hot path, where the whole
check is one attribute read (``otel.tracing is None``).

This module is the switch, and a built-in plugin (entry point ``otel``):
its ``publish_messages`` hook opens the producer spans, and its middleware
(:mod:`.middleware`, made only when tracing is on) the dispatch and attempt
spans. :mod:`.tracing` (the spans) and :mod:`.metrics` (the ``/metrics``
families over OTLP) import OpenTelemetry and are imported only once it is on.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib.util import find_spec
from typing import TYPE_CHECKING, Any, TypeVar

import structlog

from asyncevents.core.hookspecs import hookimpl
from asyncevents.core.messages import TriggerMessage
from asyncevents.core.pipeline import Middleware, MiddlewareFactory, PipelineContext

if TYPE_CHECKING:
    from asyncevents.features.otel.tracing import Tracing

__all__ = ["Signals", "configure", "export_metrics", "publish", "publish_messages",
           "register_middleware", "signals", "tracing"]

log = structlog.get_logger("asyncevents.otel")

#: The tracer of this process, or None: tracing is off (the hot path's only check).
tracing: Tracing | None = None

_M = TypeVar("_M", bound="TriggerMessage")
_lock = threading.Lock()
_configured = False
_metrics_exporters: list[str] = []
_EXPORTERS = ("otlp", "console")


@dataclass(frozen=True)
class Signals:
    """The exporters each signal asked for (empty: that signal is off)."""

    traces: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()


def _exporters(environ: Mapping[str, str], signal: str) -> tuple[str, ...]:
    named = environ.get(f"OTEL_{signal}_EXPORTER")
    if named is not None and named.strip():
        names = [n.strip().lower() for n in named.split(",") if n.strip()]
        unknown = [n for n in names if n not in (*_EXPORTERS, "none")]
        if unknown:
            log.warning("unsupported OpenTelemetry exporter ignored",
                        variable=f"OTEL_{signal}_EXPORTER", exporters=unknown,
                        supported=list(_EXPORTERS))
        return tuple(n for n in dict.fromkeys(names) if n in _EXPORTERS)
    endpoint = (environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
                or environ.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT"))
    return ("otlp",) if endpoint and endpoint.strip() else ()


def signals(environ: Mapping[str, str]) -> Signals:
    """Which signals the ``OTEL_*`` variables in ``environ`` switch on (nothing is imported)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return Signals()
    return Signals(_exporters(environ, "TRACES"), _exporters(environ, "METRICS"))


def _installed() -> bool:
    try:
        return find_spec("opentelemetry.sdk") is not None
    except (ImportError, ValueError):  # a parent package that is not there, or blocked
        return False


def configure(environ: Mapping[str, str] | None = None) -> None:
    """Switch tracing on for this process if the variables ask for it (once; cheap after).

    The hooks call it when first used. Without the extra, a process whose
    variables ask for OpenTelemetry logs one warning saying what to install,
    and runs as it would without them.
    """
    global tracing, _configured
    if _configured:
        return
    with _lock:
        if _configured:
            return
        _configured = True
        wanted = signals(os.environ if environ is None else environ)
        if not (wanted.traces or wanted.metrics):
            return
        if not _installed():
            log.warning("OTEL_* variables are set but OpenTelemetry is not installed: "
                        "pip install 'asyncevents[otel]' (nothing is exported)")
            return
        _metrics_exporters[:] = wanted.metrics
        if wanted.traces:
            from asyncevents.features.otel.tracing import Tracing

            tracing = Tracing.from_environment(wanted.traces)


def publish(messages: Sequence[_M], send: Callable[[Sequence[_M]], None]) -> Sequence[_M]:
    """``send(messages)``, in a producer span per event when tracing is on.

    Returns the messages as sent: with tracing on, each carries its span's
    context, which dispatch and the deliveries continue.
    """
    if tracing is None:
        send(messages)
        return messages
    return tracing.publish(messages, send)


@hookimpl
def publish_messages(messages: Sequence[TriggerMessage],
                     send: Callable[[Sequence[TriggerMessage]], None]
                     ) -> Sequence[TriggerMessage] | None:
    """A producer span per event around ``send`` when tracing is on; else None (pass)."""
    configure()
    if tracing is None:
        return None
    return tracing.publish(messages, send)


@hookimpl
def register_middleware(register: Callable[[MiddlewareFactory], None]) -> None:
    """The dispatch and attempt spans, on engines made while tracing is on."""
    register(_middleware)


def _middleware(context: PipelineContext) -> Middleware | None:
    configure()
    if tracing is None:
        return None
    from asyncevents.features.otel.middleware import TracingMiddleware

    return TracingMiddleware(tracing)


def export_metrics(collect: Callable[[], Iterable[Any]]) -> None:
    """Export what ``collect`` yields through OTLP too, when metrics are on.

    ``collect`` is the ``collect`` of the Prometheus collector behind
    ``/metrics``: the same families, read at each export instead of at each
    scrape (``OTEL_METRIC_EXPORT_INTERVAL``, 60 s by default).
    """
    configure()
    if not _metrics_exporters:
        return
    from asyncevents.features.otel.metrics import start_export

    start_export(collect, tuple(_metrics_exporters))
