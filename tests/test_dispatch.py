"""Dispatch: resolvers, failures of resolvers, redelivered triggers."""

from __future__ import annotations

from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from asyncevents.core.app import App
from asyncevents.core.delivery.dispatch import DISPATCH_SINK
from asyncevents.core.settings import EventDefinition
from tests.helpers import Recorder, drain


def test_resolver_builds_the_payload(transport_settings: Any, httpserver: HTTPServer) -> None:
    settings = transport_settings.model_copy(update={"events": {
        "order.created": EventDefinition(resolver="tests.resolvers_for_tests:enrich")}})
    app = App(settings)
    recorder = Recorder(httpserver)
    app.subscribe("order.created", recorder.route("/r"), token="t")
    app.publish("order.created", {"id": 7})
    drain(app)
    (hit,) = recorder.hits
    assert hit.json["data"] == {"id": 7, "enriched": True}
    app.close()


def test_failing_resolver_is_retried_then_recorded_dead(
    transport_settings: Any, httpserver: HTTPServer
) -> None:
    settings = transport_settings.model_copy(update={
        "max_deaths": 2, "backoff": "fixed", "backoff_base": 0.2,
        "events": {"order.created": EventDefinition(
            resolver="tests.resolvers_for_tests:always_fails")}})
    app = App(settings)
    recorder = Recorder(httpserver)
    app.subscribe("order.created", recorder.route("/never"), token="t")
    event_id = app.publish("order.created", {"id": 8})
    drain(app)
    assert recorder.hits == []
    (dead,) = app.store.recent_deliveries()
    assert dead.event_id == event_id and dead.status == "dead"
    assert dead.sink == DISPATCH_SINK and dead.payload == {"id": 8}
    assert dead.attempts == 3  # the first try and max_deaths retries
    (attempt,) = app.store.list_attempts(dead.id)
    assert attempt.error is not None and "inventory service unreachable" in attempt.error
    app.close()


def test_redelivered_trigger_creates_no_duplicate(make_settings: Any,
                                                 httpserver: HTTPServer) -> None:
    app = App(make_settings(transport_url="memory://"))
    recorder = Recorder(httpserver)
    app.subscribe("*", recorder.route("/once"), token="t")
    app.publish("order.created", {"id": 9})
    drain(app)
    (delivery,) = app.store.recent_deliveries()
    # The same trigger message again, as after a worker crash before its ack.
    from asyncevents.core.messages import TriggerMessage

    app.transport.enqueue(TriggerMessage(delivery.event_id, "order.created", {"id": 9},
                                         delivery.published_at))
    drain(app, idle=0.5)
    assert len(app.store.recent_deliveries()) == 1
    assert len(recorder.hits) == 1
    app.close()


def test_subscription_filter_selects_payloads(make_settings: Any,
                                              httpserver: HTTPServer) -> None:
    app = App(make_settings())
    recorder = Recorder(httpserver)
    app.subscribe("order.*", recorder.route("/big"), token="t",
                  filter="total:>=100 AND items.sku:AB*")
    app.subscribe("order.*", recorder.route("/all"), token="t")
    app.publish("order.created", {"total": 150, "items": [{"sku": "ZZ"}, {"sku": "AB1"}]})
    app.publish("order.created", {"total": 150, "items": [{"sku": "ZZ"}]})
    app.publish("order.created", {"total": 99, "items": [{"sku": "AB1"}]})
    drain(app)
    assert [h.json["data"]["total"] for h in recorder.on("/big")] == [150]
    assert len(recorder.on("/all")) == 3
    app.close()


def test_bad_filter_is_refused_at_subscribe(make_settings: Any) -> None:
    import pytest

    from asyncevents.errors import InvalidQuery

    app = App(make_settings())
    with pytest.raises(InvalidQuery, match="syntax error"):
        app.subscribe("order.*", "http://127.0.0.1:9/x", token="t", filter="total:[1 TO")
    assert app.store.list_subscriptions() == []
    app.close()


@pytest.mark.parametrize(("inline", "messages"), [(100, 1), (1, 3)])
def test_the_first_attempts_are_made_by_the_dispatching_batch(
        transport_settings: Any, httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch,
        inline: int, messages: int) -> None:
    from asyncevents.core.delivery import engine

    monkeypatch.setattr(engine, "INLINE_FANOUT", inline)
    app = App(transport_settings)
    recorder = Recorder(httpserver)
    for path in ("/a", "/b", "/c"):
        app.subscribe("order.*", recorder.route(path), token="t")
    app.publish("order.created", {"id": 1})
    report = drain(app, concurrency=1)
    assert sorted(h.path for h in recorder.hits) == ["/a", "/b", "/c"]
    # The batch that dispatched the event attempts up to INLINE_FANOUT of its
    # copies itself, without a trip through the delivery queue; the others come
    # back as delivery messages (with one inline: the trigger and two).
    assert report.handled == messages
    deliveries = app.store.recent_deliveries()
    assert {d.status for d in deliveries} == {"delivered"}
    assert all(d.attempts == 1 for d in deliveries)
    app.close()


def test_a_running_worker_sees_subscription_changes(make_settings: Any,
                                                    httpserver: HTTPServer) -> None:
    import threading
    import time

    from asyncevents.core.delivery.dispatch import SUBSCRIPTIONS_FRESH
    from asyncevents.core.worker.worker import WorkerLimits

    app = App(make_settings())
    recorder = Recorder(httpserver)
    first = app.subscribe("order.*", recorder.route("/first"), token="t")
    worker = app.worker(WorkerLimits(concurrency=4, time_limit=60))
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        def wait_for(path: str, n: int) -> None:
            deadline = time.monotonic() + 20
            while len(recorder.on(path)) < n and time.monotonic() < deadline:
                time.sleep(0.05)
            assert len(recorder.on(path)) == n

        app.publish("order.created", {"n": 1})
        wait_for("/first", 1)
        app.subscribe("order.*", recorder.route("/second"), token="t")
        app.store.update_subscription(first.id, active=False)
        time.sleep(SUBSCRIPTIONS_FRESH + 0.1)
        app.publish("order.created", {"n": 2})
        wait_for("/second", 1)
        time.sleep(0.5)
        assert [h.json["data"]["n"] for h in recorder.on("/first")] == [1]
    finally:
        worker.stop()
        thread.join(30)
    app.close()
