"""Workers never wedge: what no handler can take ends visible, and bad settings end the worker."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from asyncevents.core.app import App
from asyncevents.core.settings import Settings
from asyncevents.core.worker.worker import WorkerLimits
from asyncevents.testing import FakeSink, sink_plugin
from tests.helpers import inline_plugins, run_cli


def test_a_missing_sink_ends_dead_with_the_reason(make_settings: Callable[..., Settings]
                                                  ) -> None:
    settings = make_settings(backoff_base=0.1)
    with_sink = inline_plugins()
    with_sink.register(sink_plugin("fake", lambda s: FakeSink()))
    creator = App(settings, plugins=with_sink)
    gone = creator.subscribe("thing.*", "somewhere", sink="fake", token="t",
                             retry_policy={"max_deaths": 2})
    creator.publish("thing.done", {"k": 1})
    creator.close()

    app = App(settings, plugins=inline_plugins())  # the plugin was uninstalled
    started = time.monotonic()
    report = app.run_worker(WorkerLimits(max_idle_time=1, time_limit=60))
    assert report.reason == "idle"  # --max-idle-time fired: nothing left in a loop
    assert time.monotonic() - started < 30
    (delivery,) = app.store.recent_deliveries()
    assert delivery.subscription_id == gone.id
    assert delivery.status == "dead"
    attempts = app.store.list_attempts(delivery.id)
    assert len(attempts) == 3  # the first try and max_deaths retries
    assert all("unknown sink 'fake'" in (a.error or "") for a in attempts)
    app.close()


def test_a_worker_with_a_wrong_broker_password_exits_at_once(tmp_path: Path,
                                                               amqp_url: str) -> None:
    wrong = amqp_url.replace("guest:guest@", "guest:S3cr3t-Pw@")
    assert wrong != amqp_url
    started = time.monotonic()
    result = run_cli("worker", cwd=tmp_path, env={"ASYNCEVENTS_TRANSPORT_URL": wrong},
                     timeout=30)
    assert time.monotonic() - started < 10
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "ACCESS_REFUSED" in lines[0]
    assert "S3cr3t" not in result.stderr + result.stdout  # the password is not shown


def test_a_worker_on_a_missing_database_exits_at_once(tmp_path: Path) -> None:
    started = time.monotonic()
    result = run_cli("worker", cwd=tmp_path, env={
        "ASYNCEVENTS_DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/no_such_database",
        "ASYNCEVENTS_TRANSPORT_URL": f"sqla+sqlite:///{tmp_path / 'q.db'}"}, timeout=30)
    assert time.monotonic() - started < 10
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "no_such_database" in lines[0] and "does not exist" in lines[0]
