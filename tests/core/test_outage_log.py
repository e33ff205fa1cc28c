"""An outage of the store or the broker is two lines in a worker's log: a warning when it
starts, one line with its duration when it ends (not one per requeued message or per
reconnect). The outages are real: the server is reached through a proxy that the test
cuts and restores (tests/proxy.py), the server itself keeps running for the others.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from pytest_httpserver import HTTPServer
from structlog.testing import capture_logs

from asyncevents.core.app import App
from asyncevents.core.retry.outage import OutageLog
from asyncevents.core.settings import Settings
from asyncevents.core.store import Store
from asyncevents.core.worker.worker import Worker, WorkerLimits
from tests.helpers import Recorder, delete_amqp_queues
from tests.proxy import Proxy


def _events(logs: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    return [entry for entry in logs if text in entry["event"]]


def test_one_warning_when_it_starts_one_line_when_it_ends() -> None:
    outage = OutageLog("store")
    with capture_logs() as logs:
        before = time.monotonic()
        assert outage.failed(ConnectionError("refused\nbackground"), count=2)
        for _ in range(59):
            assert not outage.failed(ConnectionError("refused"))
        assert outage.down
        assert outage.recovered(began=before - 1) is None  # began before it: proves nothing
        assert outage.down
        time.sleep(0.2)
        took = outage.recovered()
        assert outage.recovered() is None  # over already
    assert took is not None and took >= 0.2
    assert [e["event"] for e in logs] == [
        "store unreachable (ConnectionError: refused)",
        f"store back after {took:.1f} s (61 messages requeued)",
    ]
    assert logs[1]["down_for"] == round(took, 1) and logs[1]["messages_requeued"] == 61
    assert all(e["log_level"] == "warning" for e in logs)
    assert outage.outages == 1 and outage.failures == 60


def _run_worker(worker: Worker) -> tuple[threading.Thread, list[Any]]:
    reports: list[Any] = []
    thread = threading.Thread(target=lambda: reports.append(worker.run()), daemon=True)
    thread.start()
    return thread, reports


def test_a_store_outage_is_two_lines_not_one_per_message(
        pg_url: str, make_settings: Callable[..., Settings], httpserver: HTTPServer) -> None:
    Store.open(pg_url, auto_migrate=True).close()
    with Proxy(5432) as proxy:
        proxied = pg_url.replace(":5432/", f":{proxy.port}/")
        app = App(make_settings(database_url=proxied, transport_url="memory://"))
        recorder = Recorder(httpserver)
        app.subscribe("*", recorder.route("/hook"), token="t")
        events = {app.publish("shop.order", {"n": n}) for n in range(40)}
        worker = app.worker(WorkerLimits(concurrency=4, max_idle_time=2, time_limit=60))
        proxy.cut()  # the store goes away with 40 events waiting
        with capture_logs() as logs:
            thread, reports = _run_worker(worker)
            time.sleep(4)
            proxy.restore()
            thread.join(90)
        app.close()
    assert reports and {hit.json["id"] for hit in recorder.hits} == events
    assert _events(logs, "handler failed") == []
    started, ended = _events(logs, "store unreachable"), _events(logs, "store back after")
    assert len(started) == 1 and len(ended) == 1, [e["event"] for e in logs]
    assert ended[0]["messages_requeued"] > 1  # counted, not logged one by one
    assert ended[0]["down_for"] >= 3


def test_a_broker_outage_is_two_lines_not_one_per_reconnect(
        amqp_url: str, make_settings: Callable[..., Settings]) -> None:
    with Proxy(5672) as proxy:
        settings = make_settings(transport_url=amqp_url.replace(":5672/", f":{proxy.port}/"))
        app = App(settings)
        try:
            with capture_logs() as logs:
                worker = app.worker(WorkerLimits(concurrency=2, time_limit=60))
                thread, reports = _run_worker(worker)
                time.sleep(1)
                proxy.cut()  # reconnects after 0.5, 1, 2, 4 s (and kombu's own wait)
                time.sleep(6)
                proxy.restore()
                deadline = time.monotonic() + 30
                while not _events(logs, "restored") and time.monotonic() < deadline:
                    time.sleep(0.1)
                worker.stop()
                thread.join(30)
        finally:
            app.close()
            delete_amqp_queues(settings)
    assert reports and reports[0].reconnects >= 2
    lost, restored = _events(logs, "connection lost"), _events(logs, "connection restored")
    assert len(lost) == 1 and len(restored) == 1, [e["event"] for e in logs]
    assert restored[0]["reconnects"] == reports[0].reconnects
    assert restored[0]["down_for"] >= 5

