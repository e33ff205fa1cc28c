"""The ``/metrics`` families over OTLP: the same collector, read on a timer.

The numbers behind ``/metrics`` are not counted in the process: a Prometheus
collector reads them from the store and the broker when asked (see
:mod:`asyncevents.api.services.metrics`), so they cover every worker. OpenTelemetry's
instruments cannot carry that as it is (there is no observable histogram,
and the Prometheus bridge is not part of the Python SDK), so this module is
a small bridge instead: every ``OTEL_METRIC_EXPORT_INTERVAL`` (60 s by
default) a thread asks the same collector, turns each family into its
OpenTelemetry twin under the same name and labels (a gauge into a gauge, a
counter into a monotonic sum, a histogram into a histogram with the same
bounds), and hands them to the exporter. One read of the store per export,
none when metrics are off; a last export when the process exits.

Imported only when metrics are on (:func:`asyncevents.features.otel.export_metrics`).
"""

from __future__ import annotations

import atexit
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import structlog
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    ConsoleMetricExporter,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricExporter,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from asyncevents.features.otel.resource import resource, version

__all__ = ["MetricsExport", "start_export", "translate"]

log = structlog.get_logger("asyncevents.otel")

_DEFAULT_INTERVAL_MS = 60_000.0


def _interval() -> float:
    raw = os.environ.get("OTEL_METRIC_EXPORT_INTERVAL", "")
    try:
        millis = float(raw) if raw.strip() else _DEFAULT_INTERVAL_MS
    except ValueError:
        log.warning("OTEL_METRIC_EXPORT_INTERVAL is not a number of milliseconds, "
                    "using 60000", value=raw)
        millis = _DEFAULT_INTERVAL_MS
    return max(millis, 100.0) / 1000


def _exporter(name: str) -> MetricExporter:
    if name == "console":
        return ConsoleMetricExporter()
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    return OTLPMetricExporter()  # endpoint, headers, timeout: from the OTEL_* variables


def _histogram(family: Any, start: int, now: int) -> Histogram:
    # Prometheus buckets are cumulative and keyed by "le"; OTLP wants each
    # bucket's own count and the finite bounds.
    series: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
    for sample in family.samples:
        labels = {k: v for k, v in sample.labels.items() if k != "le"}
        point = series.setdefault(tuple(sorted(labels.items())), {"buckets": []})
        if sample.name.endswith("_bucket"):
            point["buckets"].append((float(sample.labels["le"]), sample.value))
        elif sample.name.endswith("_sum"):
            point["sum"] = sample.value
        elif sample.name.endswith("_count"):
            point["count"] = sample.value
    points = []
    for key, point in series.items():
        buckets = sorted(point["buckets"])
        bounds = [le for le, _ in buckets if not math.isinf(le)]
        cumulative = [n for _, n in buckets]
        counts = [int(n - (cumulative[i - 1] if i else 0)) for i, n in enumerate(cumulative)]
        if len(counts) == len(bounds):  # no +Inf bucket: nothing above the last bound
            counts.append(0)
        total = int(point.get("count", cumulative[-1] if cumulative else 0))
        points.append(HistogramDataPoint(
            attributes=dict(key), start_time_unix_nano=start, time_unix_nano=now,
            count=total, sum=float(point.get("sum", 0.0)), bucket_counts=counts,
            explicit_bounds=bounds,
            # Prometheus keeps no min or max: left out rather than made up.
            min=None, max=None))  # type: ignore[arg-type]
    return Histogram(data_points=points,
                     aggregation_temporality=AggregationTemporality.CUMULATIVE)


def translate(families: Iterable[Any], start: int, now: int) -> list[Metric]:
    """The OpenTelemetry metrics for Prometheus ``families`` (unsupported types left out)."""
    metrics = []
    for family in families:
        data: Gauge | Sum | Histogram
        if family.type == "gauge":
            data = Gauge(data_points=[
                NumberDataPoint(attributes=dict(s.labels), start_time_unix_nano=start,
                                time_unix_nano=now, value=s.value)
                for s in family.samples if s.name == family.name])
        elif family.type == "counter":
            data = Sum(data_points=[
                NumberDataPoint(attributes=dict(s.labels), start_time_unix_nano=start,
                                time_unix_nano=now, value=s.value)
                for s in family.samples if s.name == f"{family.name}_total"],
                aggregation_temporality=AggregationTemporality.CUMULATIVE, is_monotonic=True)
        elif family.type == "histogram":
            data = _histogram(family, start, now)
        else:
            continue
        metrics.append(Metric(name=family.name, description=family.documentation,
                              unit=family.unit or "", data=data))
    return metrics


class MetricsExport:
    """Exports what ``collect`` yields every ``interval`` seconds, on a thread of its own."""

    def __init__(self, collect: Callable[[], Iterable[Any]],
                 exporters: Sequence[MetricExporter], interval: float) -> None:
        self.collect = collect
        self.exporters = list(exporters)
        self.interval = interval
        self._resource = resource()
        self._scope = InstrumentationScope("asyncevents", version())
        self._start = time.time_ns()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="asyncevents-otel-metrics",
                                        daemon=True)

    def start(self) -> None:
        """Start exporting; the process's exit makes a last export and stops."""
        self._thread.start()
        atexit.register(self.shutdown)

    def export(self) -> None:
        """Collect and export once (a failure is logged; the next one may pass)."""
        try:
            now = time.time_ns()
            metrics = translate(self.collect(), self._start, now)
            data = MetricsData(resource_metrics=[ResourceMetrics(
                resource=self._resource, schema_url="",
                scope_metrics=[ScopeMetrics(scope=self._scope, metrics=metrics,
                                            schema_url="")])])
            for exporter in self.exporters:
                exporter.export(data)
        except Exception as exc:
            log.warning("metrics export failed", error=f"{type(exc).__name__}: {exc}")

    def shutdown(self) -> None:
        """Stop the thread, export a last time, close the exporters (twice does no harm)."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(timeout=self.interval + 5)
        self.export()
        for exporter in self.exporters:
            exporter.shutdown()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.export()


def start_export(collect: Callable[[], Iterable[Any]], exporters: Sequence[str]) -> MetricsExport:
    """Start exporting ``collect``'s families to ``exporters`` (``otlp``, ``console``)."""
    export = MetricsExport(collect, [_exporter(name) for name in exporters], _interval())
    export.start()
    return export
