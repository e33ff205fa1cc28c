"""``worker --failure-limit N`` and ``worker --only-if-waiting``, over the real transports."""

from __future__ import annotations

import json
from concurrent.futures import Future
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pytest_httpserver import HTTPServer

from asyncevents.core.app import App
from asyncevents.core.clock import utcnow
from asyncevents.core.messages import TriggerMessage
from asyncevents.core.settings import Settings
from asyncevents.core.store import Schedule
from asyncevents.core.worker.worker import WorkerLimits, WorkerReport
from tests.helpers import Recorder, run_cli, sqlite_rows


def _run(app: App, **limits: Any) -> WorkerReport:
    limits = {"concurrency": 2, "max_idle_time": 1.5, "time_limit": 60, **limits}
    return app.run_worker(WorkerLimits(**limits))


# --- --failure-limit -------------------------------------------------------------


def test_failure_limit_stops_a_worker_that_cannot_reach_its_store(
        transport_settings: Settings, httpserver: HTTPServer) -> None:
    app = App(transport_settings)
    recorder = Recorder(httpserver)
    app.subscribe("*", recorder.route("/hook"), token="t")
    events = {app.publish("shop.order", {"n": n}) for n in range(4)}
    engine = sa.create_engine(transport_settings.database_url)
    # The deliveries table gone: every dispatch fails and its message is requeued.
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE asyncevents_delivery RENAME TO delivery_away"))
    try:
        report = _run(app, failure_limit=3, max_idle_time=None)
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("ALTER TABLE delivery_away RENAME TO asyncevents_delivery"))
        engine.dispose()
    assert report.reason.startswith("failure limit reached: ")
    assert "failed in a row" in report.reason
    assert report.failed >= 3 and report.handled == 0
    assert recorder.hits == []
    # Nothing was lost: the requeued events are delivered once the store is back.
    app.close()
    app = App(transport_settings)
    again = _run(app, failure_limit=3)
    assert again.reason == "idle"
    assert {hit.json["id"] for hit in recorder.hits} == events
    app.close()


def test_a_success_resets_the_count(make_settings: Any) -> None:
    app = App(make_settings(transport_url="memory://"))
    worker = app.worker(WorkerLimits(failure_limit=2))

    def settle(*outcomes: bool) -> None:
        future: Future[list[bool | None]] = Future()
        future.set_result(list(outcomes))
        message = TriggerMessage("e", "n", {}, utcnow())
        batch: Any = [_Held(message) for _ in outcomes]
        worker._batches += 1
        worker._in_flight += len(outcomes)
        worker._done.put((batch, future, worker._generation))  # type: ignore[arg-type]
        worker._ack_done()

    settle(False, True, False)  # a success between the two failures
    settle(True)
    assert not worker._stop.is_set()
    settle(True, False, False)  # two in a row
    assert worker._stop.is_set()
    assert worker.report.reason.startswith("failure limit reached: 2 handlings failed")
    worker.engine.close()
    app.close()


class _Held:
    """A received message as the worker settles it (without a broker behind it)."""

    route = "trigger"
    dead = False

    def __init__(self, message: TriggerMessage) -> None:
        self.message = message

    def ack(self) -> None:
        pass

    def requeue(self) -> None:
        pass

    def drop(self) -> None:
        pass


# --- --only-if-waiting -------------------------------------------------------------


def test_only_if_waiting_over_each_transport(transport_settings: Settings,
                                             httpserver: HTTPServer) -> None:
    app = App(transport_settings)
    recorder = Recorder(httpserver)
    app.subscribe("*", recorder.route("/hook"), token="t")
    idle = _run(app, only_if_waiting=True, max_idle_time=None, time_limit=None)
    assert idle.skipped and idle.handled == 0
    assert idle.reason == "nothing waiting on queue(s) default"

    event_id = app.publish("shop.order", {})
    busy = _run(app, only_if_waiting=True)
    assert not busy.skipped and busy.handled == 1 and busy.reason == "idle"
    assert [hit.json["id"] for hit in recorder.hits] == [event_id]
    app.close()


def test_a_due_retry_in_the_database_schedule_is_waiting(make_settings: Any,
                                                         httpserver: HTTPServer) -> None:
    # memory:// has no delays: only a running worker's pump sends a due retry on.
    app = App(make_settings(transport_url="memory://"))
    recorder = Recorder(httpserver)
    app.subscribe("*", recorder.route("/hook"), token="t")
    later = TriggerMessage("e-later", "shop.later", {}, utcnow())
    app.retries.schedule(later, 3600)
    assert _run(app, only_if_waiting=True).skipped  # not due: nothing waits yet
    due = TriggerMessage("e-due", "shop.due", {}, utcnow())
    Schedule(app.store).add("trigger", json.dumps(due.body()), utcnow() - timedelta(seconds=1))
    report = _run(app, only_if_waiting=True)
    assert not report.skipped
    assert [hit.json["id"] for hit in recorder.hits] == ["e-due"]
    app.close()


def _cli_env(settings: Settings) -> dict[str, str]:
    return {"ASYNCEVENTS_TRANSPORT_URL": settings.transport_url,
            "ASYNCEVENTS_DATABASE_URL": settings.database_url,
            "ASYNCEVENTS_QUEUE_PREFIX": settings.queue_prefix,
            "ASYNCEVENTS_ALLOWED_NETWORKS": "127.0.0.0/8",
            "ASYNCEVENTS_STRICT_EVENTS": "false",
            "ASYNCEVENTS_ROUTING": json.dumps(settings.routing)}


def test_only_if_waiting_from_the_command_line(make_settings: Any, tmp_path: Path,
                                               httpserver: HTTPServer) -> None:
    settings = make_settings(routing={"shop.urgent.*": "critical"})
    env = _cli_env(settings)
    app = App(settings)
    recorder = Recorder(httpserver)
    app.subscribe("*", recorder.route("/hook"), token="t")

    empty = run_cli("worker", "--only-if-waiting", cwd=tmp_path, env=env)
    assert empty.returncode == 0, empty.stderr
    assert empty.stderr.strip().splitlines()[-1] == (
        "nothing waiting on queue(s) critical, default: the worker did not start")

    # A delayed event is not waiting until it is due.
    app.publish("shop.order", {}, delay=3600)
    delayed = run_cli("worker", "--only-if-waiting", cwd=tmp_path, env=env)
    assert delayed.returncode == 0 and "the worker did not start" in delayed.stderr
    queue_db = Path(settings.transport_url.removeprefix("sqla+sqlite:///"))
    assert sqlite_rows(queue_db, "asyncevents_queue_message") == 1  # still there, untouched

    # Something waits on default, but not on the queue asked for.
    event_id = app.publish("shop.order", {})
    other = run_cli("worker", "--queues", "critical", "--only-if-waiting", cwd=tmp_path,
                    env=env)
    assert other.returncode == 0
    assert "nothing waiting on queue(s) critical: the worker did not start" in other.stderr

    busy = run_cli("worker", "--only-if-waiting", "--max-idle-time", "1", "--json",
                   cwd=tmp_path, env=env)
    assert busy.returncode == 0, busy.stderr
    assert json.loads(busy.stdout)["handled"] == 1
    assert [hit.json["id"] for hit in recorder.hits] == [event_id]
    app.close()
