"""Prometheus metrics, computed from the store and the broker at scrape time.

Reading the store rather than counting in this process means the numbers
cover every worker, wherever it runs, and survive restarts:

- ``asyncevents_deliveries{sink, status}``: deliveries by sink and outcome;
- ``asyncevents_attempt_duration_seconds{sink}``: a histogram of the attempts
  started in the last ``window`` (24 h by default);
- ``asyncevents_queue_messages{queue}``: messages ready in each queue;
- ``asyncevents_scheduled_retries``: retries waiting in the database schedule.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import case, func, select

from asyncevents.core.app import App
from asyncevents.core.clock import utcnow
from asyncevents.core.store.schema import attempts, deliveries, schedule

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
        query = (select(deliveries.c.sink, deliveries.c.status, func.count())
                 .group_by(deliveries.c.sink, deliveries.c.status))
        with self.app.store.begin() as conn:
            for sink, status, count in conn.execute(query):
                family.add_metric([sink, status], int(count))
        yield family

    def _latency(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(
            "asyncevents_attempt_duration_seconds",
            f"Duration of delivery attempts started in the last {self.window}.",
            labels=["sink"],
        )
        ms = attempts.c.duration_ms
        columns: list[Any] = [deliveries.c.sink, func.count(), func.sum(ms)]
        columns += [func.sum(case((ms <= bound * 1000, 1), else_=0)) for bound in BUCKETS]
        query = (select(*columns)
                 .select_from(attempts.join(deliveries, attempts.c.delivery_id == deliveries.c.id))
                 .where(attempts.c.started_at >= utcnow() - self.window)
                 .group_by(deliveries.c.sink))
        with self.app.store.begin() as conn:
            for sink, count, total_ms, *counts in conn.execute(query):
                buckets = [(_le(bound), float(n or 0)) for bound, n in zip(BUCKETS, counts,
                                                                           strict=True)]
                buckets.append(("+Inf", float(count)))
                family.add_metric([sink], buckets, sum_value=float(total_ms or 0) / 1000)
        yield family

    def _queues(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("asyncevents_queue_messages",
                                   "Messages ready in each queue.", labels=["queue"])
        broker = self.app.broker
        conn = broker.connect()
        try:
            conn.ensure_connection(max_retries=1, timeout=3)
            for queue in broker.topology.queues:
                with conn.channel() as channel:
                    try:
                        ok = channel.queue_declare(queue=queue.name, passive=True)
                    except Exception:  # not declared yet: nothing published to it
                        continue
                family.add_metric([queue.name], int(ok.message_count))
        finally:
            conn.release()
        yield family

    def _scheduled(self) -> Iterator[Metric]:
        with self.app.store.begin() as conn:
            count = conn.execute(select(func.count()).select_from(schedule)).scalar_one()
        yield GaugeMetricFamily("asyncevents_scheduled_retries",
                                "Messages waiting in the database retry schedule.",
                                value=int(count))


def _le(bound: float) -> str:
    return repr(float(bound))


def metrics_registry(app: App) -> CollectorRegistry:
    """A registry of its own for ``app`` (several apps in one process do not mix)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(app))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The text exposition format."""
    return generate_latest(registry)
