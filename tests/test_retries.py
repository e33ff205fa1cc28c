"""Retries over each real transport: classification, back-off, Retry-After, dead deliveries."""

from __future__ import annotations

import itertools
import time
from typing import Any

from pytest_httpserver import HTTPServer

from asyncevents.core.app import App
from tests.helpers import Recorder, drain


def _app(settings: Any, **overrides: Any) -> App:
    return App(settings.model_copy(update={"backoff_base": 0.2, **overrides}))


def _single(app: App) -> Any:
    (delivery,) = app.store.recent_deliveries()
    return delivery


def test_fails_twice_then_succeeds(transport_settings: Any, httpserver: HTTPServer) -> None:
    app = _app(transport_settings)
    recorder = Recorder(httpserver)
    app.subscribe("*", recorder.route("/flaky", [500, 503]), token="t")
    app.publish("order.created", {"n": 1})
    drain(app)
    delivery = _single(app)
    assert delivery.status == "delivered" and delivery.attempts == 3
    attempts = app.store.list_attempts(delivery.id)
    assert [(a.number, a.success, a.status_code) for a in attempts] == [
        (1, False, 500), (2, False, 503), (3, True, 200)]
    assert {hit.headers["webhook-id"] for hit in recorder.hits} == {delivery.id}
    app.close()


def test_always_500_dies_after_max_deaths(transport_settings: Any,
                                          httpserver: HTTPServer) -> None:
    app = _app(transport_settings, max_deaths=3, backoff="fixed", backoff_base=0.1)
    recorder = Recorder(httpserver)
    app.subscribe("*", recorder.route("/down", [500] * 50), token="t")
    app.publish("order.created", {"n": 1})
    drain(app)
    delivery = _single(app)
    assert delivery.status == "dead"
    assert delivery.attempts == 4 == len(recorder.hits)  # 1 + max_deaths
    assert delivery.next_attempt_at is None
    app.close()


def test_400_is_not_retried(transport_settings: Any, httpserver: HTTPServer) -> None:
    app = _app(transport_settings)
    recorder = Recorder(httpserver)
    app.subscribe("*", recorder.route("/bad", [400] * 5), token="t")
    app.publish("order.created", {"n": 1})
    drain(app)
    delivery = _single(app)
    assert delivery.status == "dead" and delivery.attempts == 1 == len(recorder.hits)
    app.close()


def test_410_disables_the_subscription(transport_settings: Any, httpserver: HTTPServer) -> None:
    app = _app(transport_settings)
    recorder = Recorder(httpserver)
    sub = app.subscribe("*", recorder.route("/gone", [410] * 5), token="t")
    app.publish("order.created", {"n": 1})
    drain(app)
    delivery = _single(app)
    assert delivery.status == "dead" and delivery.attempts == 1
    assert app.store.get_subscription(sub.id).active is False
    (attempt,) = app.store.list_attempts(delivery.id)
    assert attempt.error is not None and "disabled" in attempt.error
    app.publish("order.created", {"n": 2})  # nothing matches any more
    drain(app, idle=0.5)
    assert len(recorder.hits) == 1
    app.close()


def test_retry_after_is_honoured(transport_settings: Any, httpserver: HTTPServer) -> None:
    app = _app(transport_settings)
    recorder = Recorder(httpserver)
    app.subscribe("*", recorder.route("/busy", [429], headers={"Retry-After": "2"}), token="t")
    app.publish("order.created", {"n": 1})
    drain(app)
    delivery = _single(app)
    assert delivery.status == "delivered"
    first, second = app.store.list_attempts(delivery.id)
    gap = (second.started_at - first.started_at).total_seconds()
    assert gap >= 2.0, gap
    app.close()


def test_backoff_gaps_follow_the_policy(transport_settings: Any, httpserver: HTTPServer) -> None:
    # linear with base 0.5: waits of 0.5, 1.0, 1.5 s between the four attempts
    app = _app(transport_settings, backoff="linear", backoff_base=0.5)
    recorder = Recorder(httpserver)
    app.subscribe("*", recorder.route("/slowly", [500, 500, 500]), token="t")
    app.publish("order.created", {"n": 1})
    drain(app)
    delivery = _single(app)
    assert delivery.status == "delivered" and delivery.attempts == 4
    times = [a.started_at for a in app.store.list_attempts(delivery.id)]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    for gap, expected in zip(gaps, [0.5, 1.0, 1.5], strict=True):
        # never early; late by at most the polling/pump granularity plus scheduling noise
        assert expected <= gap <= expected + 0.8, gaps
    app.close()


def test_delayed_publish_survives_a_worker_restart(transport_settings: Any,
                                                   httpserver: HTTPServer) -> None:
    app = _app(transport_settings)
    recorder = Recorder(httpserver)
    app.subscribe("*", recorder.route("/later"), token="t")
    published = time.monotonic()
    app.publish("order.reminder", {"n": 1}, delay=3)
    drain(app, idle=0.5, time_limit=1.0)  # a first worker stops before it is due
    assert recorder.hits == []
    app.close()
    app = _app(transport_settings)  # a new worker process would see the same state
    # A RabbitMQ worker only knows the delays it parked itself: idle long enough.
    drain(app, idle=3.0)
    assert len(recorder.hits) == 1
    assert time.monotonic() - published >= 3.0
    app.close()
