"""Prometheus metrics, computed from the store and the broker at scrape time.

Reading the store rather than counting in this process means the numbers
cover every worker, wherever it runs, and survive restarts:

- ``asyncevents_deliveries{sink, status}``: deliveries by sink and outcome;
- ``asyncevents_attempt_duration_seconds{sink}``: a histogram of the attempts
  started in the last ``window`` (24 h by default);
- ``asyncevents_queue_messages{queue}``: messages ready in each queue;
- ``asyncevents_scheduled_retries``: retries waiting in the database schedule.

With OpenTelemetry metrics configured (``OTEL_*``, see :mod:`asyncevents.features.otel`)
the same families are also exported through OTLP by the process that serves them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import timedelta

import structlog
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from asyncevents.core.app import App
from asyncevents.core.clock import utcnow
from asyncevents.features import otel

__all__ = ["BUCKETS", "StoreCollector", "metrics_registry", "render"]

log = structlog.get_logger("asyncevents.metrics")

BUCKETS: Sequence[float] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                            30.0)


class StoreCollector(Collector):
    """Collects the asyncevents metrics of one App on each scrape."""

    def __init__(self, app: App, window: timedelta = timedelta(hours=24)) -> None:
        self.app = app
        self.window = window

    def collect(self) -> Iterator[Metric]:
        """Every metric; a part whose source fails is left out and logged."""
        for part in (self._deliveries, self._latency, self._queues, self._scheduled):
            try:
                yield from part()
            except Exception as exc:
                log.warning("metrics source failed", source=part.__name__,
                            error=f"{type(exc).__name__}: {exc}")

    def _deliveries(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("asyncevents_deliveries", "Deliveries by sink and status.",
                                   labels=["sink", "status"])
        for sink, status, count in self.app.store.count_deliveries_by_status():
            family.add_metric([sink, status], count)
        yield family

    def _latency(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(
            "asyncevents_attempt_duration_seconds",
            f"Duration of delivery attempts started in the last {self.window}.",
            labels=["sink"],
        )
        for row in self.app.store.attempt_durations(utcnow() - self.window, BUCKETS):
            buckets = [(_le(bound), float(n)) for bound, n in zip(BUCKETS, row.buckets,
                                                                  strict=True)]
            buckets.append(("+Inf", float(row.attempts)))
            family.add_metric([row.sink], buckets, sum_value=row.total_ms / 1000)
        yield family

    def _queues(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("asyncevents_queue_messages",
                                   "Messages ready in each queue.", labels=["queue"])
        for name, size in self.app.transport.queue_sizes().items():
            family.add_metric([name], size)
        yield family

    def _scheduled(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("asyncevents_scheduled_retries",
                                "Messages waiting in the database retry schedule.",
                                value=self.app.store.count_scheduled())


def _le(bound: float) -> str:
    return repr(float(bound))


def metrics_registry(app: App) -> CollectorRegistry:
    """A registry of its own for ``app`` (several apps in one process do not mix)."""
    registry = CollectorRegistry(auto_describe=False)
    collector = StoreCollector(app)
    registry.register(collector)
    otel.export_metrics(collector.collect)  # the same families over OTLP, when configured
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The text exposition format."""
    return generate_latest(registry)
