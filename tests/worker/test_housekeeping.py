"""Housekeeping runs on a thread of its own, and a slow task never holds back an ack."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from asyncevents.core.app import App
from asyncevents.core.worker.housekeeping import THREAD_NAME, Housekeeping
from asyncevents.core.worker.worker import Worker, WorkerLimits, WorkerReport


def _wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def test_tasks_run_on_the_housekeeping_thread_each_at_its_period() -> None:
    seen: dict[str, list[str]] = {"fast": [], "slow": []}
    keeping = Housekeeping()
    keeping.add("fast", 0.02, lambda: seen["fast"].append(threading.current_thread().name),
                first=0.0)
    keeping.add("slow", 0.3, lambda: seen["slow"].append(threading.current_thread().name))
    keeping.start()
    try:
        assert _wait_for(lambda: len(seen["slow"]) >= 1)
    finally:
        assert keeping.stop()
    assert set(seen["fast"]) == set(seen["slow"]) == {THREAD_NAME}
    assert len(seen["fast"]) > 5 * len(seen["slow"])  # each at its own period
    assert not keeping.running


def test_a_task_that_raises_is_logged_and_tried_again(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []

    def broken() -> None:
        calls.append(1)
        raise RuntimeError("store away")

    keeping = Housekeeping()
    failing = keeping.add("broken", 0.02, broken, first=0.0)
    other = keeping.add("other", 0.02, lambda: None, first=0.0)
    keeping.start()
    try:
        assert _wait_for(lambda: len(calls) >= 3)
        assert keeping.running  # the thread lives on
    finally:
        keeping.stop()
    assert failing.failures == failing.runs >= 3
    assert other.runs >= 3 and other.failures == 0


def test_stop_waits_for_a_slow_task_only_so_long() -> None:
    release = threading.Event()
    started = threading.Event()

    def slow() -> None:
        started.set()
        release.wait(10)

    keeping = Housekeeping()
    keeping.add("slow", 60, slow, first=0.0)
    keeping.start()
    assert started.wait(5)
    before = time.monotonic()
    assert keeping.stop(timeout=0.2) is False  # still running: left to finish
    assert time.monotonic() - before < 1.0
    release.set()
    assert _wait_for(lambda: not keeping.running)


def test_every_periodic_task_of_a_worker_runs_off_the_consuming_thread(
        make_settings: Any) -> None:
    settings = make_settings(transport_url="memory://")
    app = App(settings)
    worker = app.worker(WorkerLimits(time_limit=30), retention_days=30)
    ran: dict[str, str] = {}
    everything = threading.Event()

    def recorded(name: str, task: Callable[[], object]) -> Callable[[], object]:
        def run() -> object:
            ran.setdefault(name, threading.current_thread().name)
            if len(ran) == len(worker.housekeeping.tasks):
                everything.set()
            return task()
        return run

    for periodic in worker.housekeeping.tasks:
        periodic.task, periodic.first = recorded(periodic.name, periodic.task), 0.0
    report: list[WorkerReport] = []
    consumer = threading.Thread(target=lambda: report.append(worker.run()), name="consumer")
    consumer.start()
    try:
        assert everything.wait(10), ran
    finally:
        worker.stop()
        consumer.join(30)
    # The retry pump, the presence heartbeat, the health flush, the outbox sweep
    # and the clean-up: every one on the housekeeping thread.
    assert set(ran) == {"retry pump", "presence", "health flush", "outbox sweep", "cleanup"}
    assert set(ran.values()) == {THREAD_NAME}
    assert report and report[0].reason == "stopped"
    app.close()


def _queue_rows(app: App) -> int:
    """Rows in the SQL queue: waiting, leased or delayed (an acked message's row is deleted)."""
    return sum((stats.ready or 0) + (stats.in_flight or 0) + (stats.delayed or 0)
               for stats in app.transport.queue_stats())


def test_a_slow_housekeeping_task_does_not_delay_acks(make_settings: Any,
                                                      httpserver: HTTPServer) -> None:
    app = App(make_settings())  # the SQL queue on SQLite: an acked message's row is deleted
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    app.subscribe("*", httpserver.url_for("/hook"), token="t")
    worker: Worker = app.worker(WorkerLimits(concurrency=2, time_limit=60))
    slow_started, slow_done = threading.Event(), threading.Event()

    def slow() -> None:  # a purge of a big table, a store that answers late
        slow_started.set()
        time.sleep(2.0)
        slow_done.set()

    worker.housekeeping.add("slow", 3600, slow, first=0.0)
    consumer = threading.Thread(target=worker.run, name="consumer")
    consumer.start()
    try:
        assert slow_started.wait(10)
        app.publish_many([("shop.order", {"n": n}) for n in range(5)])
        published = time.monotonic()
        assert _queue_rows(app) > 0  # the trigger messages wait, not acked yet
        # Every message handled and acked (its row deleted) while the task still sleeps.
        assert _wait_for(lambda: len(httpserver.log) == 5 and _queue_rows(app) == 0,
                         timeout=1.5)
        acked_in = time.monotonic() - published
        assert not slow_done.is_set()
        assert acked_in < 1.5
    finally:
        worker.stop()
        consumer.join(30)
    assert worker.report.handled == 5
    app.close()
