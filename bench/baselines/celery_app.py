"""The Celery baseline: a task is one POST with a module-level reused httpx client.

Started by the benchmark as ``celery -A bench.baselines.celery_app worker -P prefork -c 2``;
the queue name comes from ``BENCH_CELERY_QUEUE``.
"""

from __future__ import annotations

import os
from typing import Any

import httpx
from celery import Celery

_client: httpx.Client | None = None  # one per worker process, made after the fork


def _http() -> httpx.Client:
    global _client
    if _client is None:
        _client = httpx.Client(timeout=30.0, trust_env=False)
    return _client


def make_app(queue: str) -> Celery:
    broker = os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
    celery = Celery("bench", broker=broker)
    celery.conf.update(
        task_default_queue=queue,
        task_default_exchange=queue,
        task_default_routing_key=queue,
        task_ignore_result=True,
        worker_enable_remote_control=False,
        worker_send_task_events=False,
        task_send_sent_event=False,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )

    @celery.task(name="bench.post", shared=False)  # type: ignore[untyped-decorator]
    def post(url: str, body: str) -> None:
        response = _http().post(url, content=body.encode(),
                                headers={"content-type": "application/cloudevents+json"})
        response.raise_for_status()

    return celery


app = make_app(os.environ.get("BENCH_CELERY_QUEUE", "bench-celery"))
__all__: list[Any] = ["app", "make_app"]
