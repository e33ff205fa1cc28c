"""A worker whose queue is unreachable reconnects with back-off; it never dies of it."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from asyncevents.core.app import App
from asyncevents.core.worker.worker import WorkerLimits


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_an_unreachable_sql_queue_is_a_connection_error(make_settings: Callable[..., Any]) -> None:
    # kombu wraps the driver's error in its own OperationalError when a connection
    # fails: the worker must take that for a lost connection too (found by the
    # "PostgreSQL restarted" fault row: the reconnect during the outage killed it).
    url = f"sqla+postgresql+psycopg://postgres@127.0.0.1:{_closed_port()}/test"
    app = App(make_settings(transport_url=url))
    worker = app.worker(WorkerLimits(concurrency=2, time_limit=30))
    outcome: list[object] = []
    thread = threading.Thread(target=lambda: outcome.append(worker.run()))
    thread.start()
    deadline = time.monotonic() + 20
    while worker.report.reconnects < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    worker.stop()
    thread.join(30)
    assert worker.report.reconnects >= 2  # still trying, with back-off
    assert outcome and worker.report.reason == "stopped"
    app.close()
