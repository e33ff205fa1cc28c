"""The batched engine: one write per batch, concurrent attempts, one bad message fails alone."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar

import pytest
from pytest_httpserver import HTTPServer
from sqlalchemy import Engine, event

from asyncevents.core.app import App
from asyncevents.core.delivery.outcome import Settle
from asyncevents.core.messages import TriggerMessage
from asyncevents.core.settings import Settings
from asyncevents.core.sink import DeliveryRequest, DeliveryResult
from asyncevents.core.transport.sql.schema import messages as queue_table
from asyncevents.testing import sink_plugin
from tests.helpers import Recorder, drain, inline_plugins

QUEUE_TABLE = queue_table.name


class Statements:
    """Counts the SQL statements of an engine by how they start."""

    def __init__(self, engine: Any) -> None:
        self.seen: list[str] = []
        event.listen(engine, "before_cursor_execute", self._on)

    def _on(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        self.seen.append(" ".join(statement.split()[:3]))

    def count(self, start: str) -> int:
        return sum(1 for seen in self.seen if seen.startswith(start + " ") or seen == start)


def test_a_batch_is_written_with_a_few_statements(make_settings: Callable[..., Settings],
                                                  httpserver: HTTPServer) -> None:
    app = App(make_settings())
    recorder = Recorder(httpserver)
    app.subscribe("order.*", recorder.route("/a"), token="t")
    app.subscribe("order.*", recorder.route("/b"), token="t")
    engine = app._engine(concurrency=4)
    statements = Statements(app.store.engine)
    messages = [app.publisher.message("order.created", {"n": n}) for n in range(30)]
    outcomes = engine.submit([(m, False) for m in messages]).result(timeout=60)
    engine.close()
    assert outcomes == [Settle.ACK] * 30
    assert len(recorder.hits) == 60
    # 60 deliveries and 60 attempts, yet a handful of statements: one insert of
    # the deliveries, one update of them and one insert of the attempts (beside
    # them: the subscriptions' health, a row each, kept by the circuit breaker).
    assert statements.count("INSERT INTO asyncevents_delivery") == 1
    assert statements.count("UPDATE asyncevents_delivery") == 1
    assert statements.count("INSERT INTO asyncevents_attempt") == 1
    assert len(statements.seen) <= 20, statements.seen
    assert {d.status for d in app.store.recent_deliveries(100)} == {"delivered"}
    app.close()


def test_the_sql_queue_acks_a_batch_in_one_statement(make_settings: Callable[..., Settings],
                                                     httpserver: HTTPServer) -> None:
    app = App(make_settings())
    recorder = Recorder(httpserver)
    app.subscribe("order.*", recorder.route("/a"), token="t")
    app.publish_many([("order.created", {"n": n}) for n in range(40)])
    deletes: list[str] = []

    def on_execute(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("DELETE") and QUEUE_TABLE in statement:
            deletes.append(statement)

    event.listen(Engine, "before_cursor_execute", on_execute)
    try:
        report = drain(app, idle=1.0)
    finally:
        event.remove(Engine, "before_cursor_execute", on_execute)
    assert report.handled == 40 and len(recorder.hits) == 40
    # 40 messages, each deleted once acked: a statement per batch (of 10 at
    # concurrency 1, and the first of a burst may go alone), not one each.
    assert 1 <= len(deletes) <= 8, deletes
    app.close()


def test_one_bad_message_fails_alone(make_settings: Callable[..., Settings],
                                     httpserver: HTTPServer) -> None:
    app = App(make_settings())
    recorder = Recorder(httpserver)
    app.subscribe("order.*", recorder.route("/a"), token="t")
    engine = app._engine(concurrency=4)
    good = [app.publisher.message("order.created", {"n": n}) for n in range(5)]
    bad = TriggerMessage("not-a-uuid-but-unique", "order.created", {"n": 99},
                         good[0].published_at)
    original = app.store.ensure_deliveries_many

    def failing(events: Any) -> Any:
        if any(e.event_id == bad.event_id for e in events):
            raise RuntimeError("this one event cannot be stored")
        return original(events)

    app.store.ensure_deliveries_many = failing  # type: ignore[method-assign]
    outcomes = engine.submit([(m, False) for m in [*good[:2], bad, *good[2:]]]).result(60)
    engine.close()
    # The batch failed as a whole; each message then went on its own.
    assert outcomes == [Settle.ACK, Settle.ACK, Settle.REQUEUE, Settle.ACK, Settle.ACK,
                        Settle.ACK]
    assert sorted(h.json["data"]["n"] for h in recorder.hits) == [0, 1, 2, 3, 4]
    app.close()


class Overlap:
    """How many deliveries were running at once, at most."""

    def __init__(self) -> None:
        self.now = self.peak = 0
        self.lock = threading.Lock()

    def enter(self) -> None:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)

    def leave(self) -> None:
        with self.lock:
            self.now -= 1


class SlowSyncSink:
    """A synchronous sink: each delivery blocks its thread for a while."""

    name: ClassVar[str] = "slowsync"
    threads: ClassVar[set[str]] = set()
    overlap: ClassVar[Overlap] = Overlap()

    def __init__(self, settings: Settings) -> None:
        pass

    def validate_recipient(self, recipient: str) -> None:
        pass

    def deliver(self, request: DeliveryRequest) -> DeliveryResult:
        SlowSyncSink.threads.add(threading.current_thread().name)
        self.overlap.enter()
        time.sleep(0.3)
        self.overlap.leave()
        return DeliveryResult.ok()

    def close(self) -> None:
        pass


class SlowAsyncSink(SlowSyncSink):
    """An asynchronous sink: awaited on the engine's loop."""

    name: ClassVar[str] = "slowasync"
    loops: ClassVar[set[str]] = set()

    async def deliver_async(self, request: DeliveryRequest) -> DeliveryResult:
        SlowAsyncSink.loops.add(threading.current_thread().name)
        self.overlap.enter()
        await asyncio.sleep(0.3)
        self.overlap.leave()
        return DeliveryResult.ok()


@pytest.mark.parametrize("sink", ["slowsync", "slowasync"])
def test_attempts_of_a_batch_run_concurrently(make_settings: Callable[..., Settings],
                                              sink: str) -> None:
    plugins = inline_plugins()
    plugins.register(sink_plugin("slowsync", SlowSyncSink))
    plugins.register(sink_plugin("slowasync", SlowAsyncSink))
    app = App(make_settings(), plugins=plugins)
    for n in range(8):
        app.subscribe("order.*", f"r{n}", sink=sink, token="t")
    engine = app._engine(concurrency=8)
    SlowSyncSink.overlap = Overlap()
    outcomes = engine.submit([(app.publisher.message("order.created", {}), False)]).result(60)
    engine.close()
    assert outcomes == [Settle.ACK]
    assert {d.status for d in app.store.recent_deliveries()} == {"delivered"}
    # The eight copies of the event were in flight together, not one after another.
    assert SlowSyncSink.overlap.peak >= 4
    if sink == "slowsync":
        assert all(name.startswith("asyncevents-sink") for name in SlowSyncSink.threads)
    else:
        assert SlowAsyncSink.loops == {"asyncevents-engine"}
    app.close()
