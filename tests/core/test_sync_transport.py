"""sync://: publish runs dispatch and delivery in the calling process, with the same records."""

from __future__ import annotations

from collections.abc import Callable

from asyncevents import DeliveryResult
from asyncevents.core.app import App
from asyncevents.core.retry.schedules import DatabaseSchedule
from asyncevents.core.settings import Settings
from asyncevents.core.worker.worker import WorkerLimits
from asyncevents.testing import FakeSink, sink_plugin
from tests.helpers import inline_plugins


def _app(make_settings: Callable[..., Settings], fake: FakeSink) -> App:
    plugins = inline_plugins()
    plugins.register(sink_plugin("fake", lambda settings: fake))
    return App(make_settings(transport_url="sync://", backoff_base=0.1), plugins=plugins)


def test_publish_delivers_before_it_returns(make_settings: Callable[..., Settings]) -> None:
    fake = FakeSink()
    app = _app(make_settings, fake)
    app.subscribe("thing.*", "first", sink="fake", token="t")
    app.subscribe("thing.*", "second", sink="fake", token="t")
    event_id = app.publish("thing.done", {"k": 1})
    # No worker ran: both copies were delivered inside publish().
    assert sorted(r.recipient for r in fake.requests) == ["first", "second"]
    deliveries = app.store.recent_deliveries()
    assert {d.event_id for d in deliveries} == {event_id}
    assert all(d.status == "delivered" and d.attempts == 1 for d in deliveries)
    (attempt,) = app.store.list_attempts(deliveries[0].id)
    assert attempt.success
    app.close()


def test_a_retry_waits_in_the_schedule_until_a_worker_pumps_it(
        make_settings: Callable[..., Settings]) -> None:
    fake = FakeSink(results=[DeliveryResult.failed("down", retryable=True)])
    app = _app(make_settings, fake)
    app.subscribe("thing.*", "there", sink="fake", token="t")
    app.publish("thing.done", {"k": 1})
    (delivery,) = app.store.recent_deliveries()
    assert delivery.status == "retrying"
    assert isinstance(app.retries, DatabaseSchedule)
    report = app.run_worker(WorkerLimits(max_idle_time=1, time_limit=20))
    assert report.reason == "idle"
    assert app.store.get_delivery(delivery.id).status == "delivered"
    assert len(fake.requests) == 2
    app.close()
