"""The SQL queue's leases of silent workers: each row names its holder; a worker reclaims
the rows of holders whose presence heartbeat stopped, and its ``--max-idle-time`` and
``--burst`` checks do not take such rows for an idle queue.

A killed worker is simulated in the table: its rows leased in its name (as its claim
left them) and its presence entry beating no more.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from pytest_httpserver import HTTPServer

from asyncevents.core.app import App
from asyncevents.core.clock import naive_utcnow, utcnow
from asyncevents.core.settings import Settings
from asyncevents.core.store import Store
from asyncevents.core.transport.sql.schema import TABLE_NAME, dispose_engines, get_engines
from asyncevents.core.transport.sql.transport import SqlTransport
from asyncevents.core.worker.presence import Leases, Presence
from asyncevents.core.worker.worker import WorkerLimits
from tests.helpers import Recorder


@pytest.fixture(params=["sqlite-shared", "postgresql-shared", "mysql-shared", "sqlite-apart"])
def app(request: pytest.FixtureRequest, make_settings: Callable[..., Settings],
        tmp_path: Path) -> Iterator[App]:
    """An App on a SQL queue: in its store's database (``shared``: the workers table is
    joined), or in a SQLite file of its own (``apart``: the store is asked first)."""
    database, where = request.param.split("-")
    if where == "apart":
        app = App(make_settings())
    else:
        if database == "sqlite":
            url = f"sqlite:///{tmp_path / 'shared.db'}"
        else:
            url = request.getfixturevalue("pg_url" if database == "postgresql" else "mysql_url")
            Store.open(url, auto_migrate=True).close()
        app = App(make_settings(database_url=url, transport_url=f"sqla+{url}"))
    yield app
    app.close()
    dispose_engines()


@pytest.fixture
def apart(make_settings: Callable[..., Settings]) -> Iterator[App]:
    """An App whose SQL queue and store are two SQLite files."""
    app = App(make_settings())
    yield app
    app.close()
    dispose_engines()


def _transport(app: App) -> SqlTransport:
    assert isinstance(app.transport, SqlTransport)
    return app.transport


def _queue(app: App) -> sa.Engine:
    return get_engines(app.settings.transport_url.partition("+")[2]).put


def _register(app: App, worker_id: str, *, silent_for: float) -> None:
    """A presence entry whose last heartbeat was ``silent_for`` seconds ago."""
    app.store.register_worker(worker_id, host="elsewhere", pid=1, queues=["trigger"],
                              concurrency=1)
    from asyncevents.core.store.schema import workers

    with app.store.begin() as conn:
        conn.execute(sa.update(workers).where(workers.c.id == worker_id).values(
            heartbeat_at=utcnow() - timedelta(seconds=silent_for)))


def _lease(app: App, holder: str, rows: int, *, seconds: float = 60.0) -> None:
    """Lease ``rows`` ready rows to ``holder`` for ``seconds``, as its claim would."""
    table = sa.table(TABLE_NAME, sa.column("id"), sa.column("visible_at"),
                     sa.column("deliveries"), sa.column("leased_by"))
    with _queue(app).begin() as conn:
        ids = [r[0] for r in conn.execute(
            sa.select(table.c.id).where(table.c.visible_at <= naive_utcnow())
            .order_by(table.c.id).limit(rows))]
        assert len(ids) == rows
        conn.execute(sa.update(table).where(table.c.id.in_(ids)).values(
            visible_at=naive_utcnow() + timedelta(seconds=seconds),
            deliveries=table.c.deliveries + 1, leased_by=holder))


def _leases(app: App) -> Leases:
    presence = Presence(app.store, ["trigger", "deliver"], 1)
    found = Leases.of(app.transport, presence)
    assert found is not None
    return found


def _publish(app: App, count: int) -> set[str]:
    return {app.publish("shop.order", {"n": n}) for n in range(count)}


def test_the_leases_of_a_silent_worker_are_reclaimed(app: App) -> None:
    _publish(app, 5)
    _register(app, "dead", silent_for=60)  # three missed beats are 15 s
    _register(app, "alive", silent_for=1)
    _lease(app, "dead", 2)
    _lease(app, "alive", 2)
    assert app.transport.waiting(["default"]) == 1
    leases = _leases(app)
    assert leases._workers_here() is (app.settings.database_url in app.settings.transport_url)
    assert leases.reclaim() == 2  # the dead worker's, not the live one's
    assert app.transport.waiting(["default"]) == 3
    assert leases.reclaim() == 0


def test_an_old_queue_table_gets_its_holder_column(tmp_path: Path,
                                                   make_settings: Callable[..., Settings]) -> None:
    path = tmp_path / "old-queue.db"
    old = sa.create_engine(f"sqlite:///{path}")
    with old.begin() as conn:  # the table as asyncevents made it before leased_by
        conn.execute(sa.text(
            f"CREATE TABLE {TABLE_NAME} (id INTEGER PRIMARY KEY AUTOINCREMENT, "
            "queue VARCHAR(200) NOT NULL, payload TEXT NOT NULL, created_at DATETIME NOT NULL, "
            "visible_at DATETIME NOT NULL, deliveries INTEGER NOT NULL)"))
    old.dispose()
    app = App(make_settings(transport_url=f"sqla+sqlite:///{path}"))
    try:
        _publish(app, 1)
        columns = {c["name"] for c in sa.inspect(_queue(app)).get_columns(TABLE_NAME)}
        assert "leased_by" in columns
    finally:
        app.close()
        dispose_engines()


def test_messages_of_a_worker_that_does_not_beat_count_as_waiting(app: App) -> None:
    _publish(app, 4)
    leases = _leases(app)
    _register(app, "killed", silent_for=2)  # it beat 2 s ago: still "live" to the CLI
    _lease(app, "killed", 2)
    _lease(app, leases.presence.id, 1)  # our own rows are ours to finish, never orphans
    idle_since = time.monotonic()
    assert leases.orphaned(["default"], idle_since) == 2
    time.sleep(0.6)
    assert leases.orphaned(["default"], idle_since) == 2  # no beat since our first look
    app.store.worker_heartbeat("killed", in_flight=0, handled=0)  # it lives after all
    time.sleep(0.6)
    assert leases.orphaned(["default"], idle_since) == 0


def _idle_worker_run(app: App, httpserver: HTTPServer, **limits: Any) -> tuple[Any, float,
                                                                                Recorder]:
    recorder = Recorder(httpserver)
    app.subscribe("*", recorder.route("/hook"), token="t")
    events = _publish(app, 6)
    # Killed right now: it beat a moment ago and holds four rows for 3 s more.
    _register(app, "killed", silent_for=0.5)
    _lease(app, "killed", 4, seconds=3.0)
    began = time.monotonic()
    report = app.run_worker(WorkerLimits(concurrency=2, time_limit=60, **limits))
    took = time.monotonic() - began
    assert {hit.json["id"] for hit in recorder.hits} == events, report
    return report, took, recorder


def test_max_idle_time_waits_for_a_killed_workers_messages(apart: App,
                                                           httpserver: HTTPServer) -> None:
    report, took, _ = _idle_worker_run(apart, httpserver, max_idle_time=1.0)
    assert report.reason == "idle"
    assert report.handled >= 6 and took >= 3.0


def test_burst_waits_for_a_killed_workers_messages(apart: App, httpserver: HTTPServer) -> None:
    report, took, _ = _idle_worker_run(apart, httpserver, burst=True)
    assert report.reason == "drained"
    assert report.handled >= 6 and took >= 3.0


def test_a_worker_reclaims_a_dead_workers_long_leases(apart: App, httpserver: HTTPServer,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Presence, "every", 0.5)  # gone after 1.5 s of silence
    recorder = Recorder(httpserver)
    apart.subscribe("*", recorder.route("/hook"), token="t")
    events = _publish(apart, 4)
    _register(apart, "dead", silent_for=10)
    _lease(apart, "dead", 4, seconds=300)  # a long lease: without the reclaim, 5 minutes
    began = time.monotonic()
    report = apart.run_worker(WorkerLimits(concurrency=2, time_limit=60, max_idle_time=1.0))
    took = time.monotonic() - began
    assert {hit.json["id"] for hit in recorder.hits} == events, report
    assert took < 10
