"""``WorkerLimits(burst=True)`` / ``worker --burst``: exit once the queues are drained."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from asyncevents.core.app import App
from asyncevents.core.settings import Settings
from asyncevents.core.worker.worker import WorkerLimits, WorkerReport


class _Receiver:
    """Answers 500 to the first ``failures`` tries of each event, then 200."""

    def __init__(self, server: HTTPServer, failures: int = 0) -> None:
        self.failures = failures
        self.tries: dict[str, int] = {}
        self.lock = threading.Lock()
        server.expect_request("/hook", method="POST").respond_with_handler(self._answer)
        self.url = server.url_for("/hook")

    def _answer(self, request: Request) -> Response:
        event_id = str(request.get_json()["id"])
        with self.lock:
            self.tries[event_id] = self.tries.get(event_id, 0) + 1
            fail = self.tries[event_id] <= self.failures
        return Response("nope" if fail else "ok", status=500 if fail else 200)


def _burst(app: App, **limits: Any) -> tuple[WorkerReport, float]:
    started = time.monotonic()
    report = app.run_worker(WorkerLimits(**{"concurrency": 2, "burst": True,
                                            "time_limit": 60, **limits}))
    return report, time.monotonic() - started


@pytest.fixture(params=["memory"])
def memory_settings(request: pytest.FixtureRequest, make_settings: Any) -> Settings:
    settings: Settings = make_settings(transport_url="memory://")
    return settings


def _drains_all(settings: Settings, httpserver: HTTPServer) -> None:
    # A quick retry (0.3 s): the worker waits for it rather than leaving it behind.
    app = App(settings.model_copy(update={"backoff": "fixed", "backoff_base": 0.3}))
    receiver = _Receiver(httpserver, failures=1)
    app.subscribe("*", receiver.url, token="t")
    # Fewer failures than open a circuit (10 in a row): each retry goes in 0.3 s.
    events = {app.publish("shop.order", {"n": n}) for n in range(6)}
    report, took = _burst(app)
    assert report.reason == "drained"
    assert report.failed == 0 and report.dropped == 0
    assert set(receiver.tries) == events
    assert set(receiver.tries.values()) == {2}  # each failed once, then was delivered
    assert {d.status for d in app.store.recent_deliveries()} == {"delivered"}
    assert took < 15  # no long idle wait: it stops once nothing is left
    again, _ = _burst(app)  # nothing left: it stops at once
    assert again.reason == "drained" and again.handled == 0
    app.close()


def test_burst_drains_the_queues_then_stops(transport_settings: Settings,
                                            httpserver: HTTPServer) -> None:
    """On the SQL queue (SQLite, PostgreSQL) and RabbitMQ (``amqp_url``)."""
    _drains_all(transport_settings, httpserver)


def test_burst_drains_the_memory_transport(memory_settings: Settings,
                                           httpserver: HTTPServer) -> None:
    """memory://: its retries wait in the database schedule, moved by the retry pump."""
    _drains_all(memory_settings, httpserver)


def test_burst_leaves_a_later_retry_to_the_next_worker(make_settings: Any,
                                                       httpserver: HTTPServer) -> None:
    app = App(make_settings(backoff="fixed", backoff_base=30))
    receiver = _Receiver(httpserver, failures=1)
    app.subscribe("*", receiver.url, token="t")
    event_id = app.publish("shop.order", {})
    report, took = _burst(app)
    assert report.reason == "drained" and took < 10
    assert receiver.tries == {event_id: 1}
    (delivery,) = app.store.recent_deliveries()
    assert delivery.status == "retrying"
    due = app.retries.seconds_until_due()
    assert due is not None and due > 20  # waiting in the queue for the next worker
    app.close()


def test_burst_does_not_stop_while_a_delivery_runs(make_settings: Any,
                                                   httpserver: HTTPServer) -> None:
    # A receiver slower than any quiet period: the worker waits for its ack.
    def slow(_request: Request) -> Response:
        time.sleep(1.5)
        return Response("ok")

    httpserver.expect_request("/slow", method="POST").respond_with_handler(slow)
    app = App(make_settings())
    app.subscribe("*", httpserver.url_for("/slow"), token="t")
    app.publish("shop.order", {})
    report, took = _burst(app)
    assert report.reason == "drained" and report.handled == 1
    assert took >= 1.5
    assert {d.status for d in app.store.recent_deliveries()} == {"delivered"}
    app.close()


def test_the_cli_burst_flag(tmp_path: Path, make_settings: Any,
                            httpserver: HTTPServer) -> None:
    settings = make_settings()
    app = App(settings)
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    app.subscribe("*", httpserver.url_for("/hook"), token="t")
    for n in range(3):
        app.publish("shop.order", {"n": n})
    app.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCEVENTS_")}
    env.update(ASYNCEVENTS_DATABASE_URL=settings.database_url,
               ASYNCEVENTS_TRANSPORT_URL=settings.transport_url,
               ASYNCEVENTS_QUEUE_PREFIX=settings.queue_prefix,
               ASYNCEVENTS_ALLOWED_NETWORKS="127.0.0.0/8")
    result = subprocess.run([sys.executable, "-m", "asyncevents", "worker", "--burst", "--json"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"handled": 3, "failed": 0, "reason": "drained"}
    assert len(httpserver.log) == 3
    assert "--burst" in subprocess.run(
        [sys.executable, "-m", "asyncevents", "worker", "--help"], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=60).stdout
