"""The pipeline: features as middleware on the delivery path, registered like any plugin.

The worked example of CONTRIBUTING's "Write a feature": a per-recipient quota.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import pytest

from asyncevents import hookimpl
from asyncevents.core.app import App
from asyncevents.core.pipeline import Batch, Middleware, PipelineContext, Settled
from asyncevents.core.plugins import Plugins
from asyncevents.core.settings import Settings
from asyncevents.core.sink import DeliveryRequest, DeliveryResult
from asyncevents.core.worker.worker import WorkerLimits
from asyncevents.features.operational import OperationalEvents
from asyncevents.features.protection import Protection
from tests.helpers import inline_plugins


class CountingSink:
    name: ClassVar[str] = "counting"
    delivered: ClassVar[list[DeliveryRequest]] = []

    def __init__(self, settings: Settings) -> None:
        pass

    def validate_recipient(self, recipient: str) -> None:
        pass

    def deliver(self, request: DeliveryRequest) -> DeliveryResult:
        self.delivered.append(request)
        return DeliveryResult.ok()

    def close(self) -> None:
        pass


class RecipientQuota(Middleware):
    """At most ``limit`` attempts per recipient and window; the rest wait, no attempt used."""

    name = "quota"
    threads: ClassVar[set[str]] = set()
    seen: ClassVar[list[Settled]] = []

    def __init__(self, context: PipelineContext, limit: int, window: float) -> None:
        self.limit, self.window = limit, window
        self.used: dict[str, int] = {}  # the loop's own: no lock

    async def before_attempts(self, batch: Batch) -> None:
        self.threads.add(threading.current_thread().name)
        for job in batch.jobs:
            if job.subscription is None:
                continue
            recipient = job.subscription.recipient
            if self.used.get(recipient, 0) >= self.limit:
                batch.hold(job.delivery.id, self.window)
            else:
                self.used[recipient] = self.used.get(recipient, 0) + 1

    async def after_attempts(self, batch: Batch, settled: Sequence[Settled]) -> None:
        self.threads.add(threading.current_thread().name)
        self.seen.extend(settled)


class QuotaPlugin:
    @hookimpl
    def register_sinks(self, register: Callable[[str, Any], None]) -> None:
        register("counting", CountingSink)

    @hookimpl
    def register_middleware(self, register: Callable[[Any], None]) -> None:
        register(lambda context: RecipientQuota(context, limit=2, window=60.0))


@pytest.fixture
def quota_app(make_settings: Callable[..., Settings]) -> Any:
    CountingSink.delivered.clear()
    RecipientQuota.threads.clear()
    RecipientQuota.seen.clear()
    plugins = inline_plugins()
    plugins.register(QuotaPlugin(), name="quota")
    app = App(make_settings(), plugins=plugins)
    yield app
    app.close()


def test_a_plugin_middleware_holds_back_what_is_over_its_quota(quota_app: App) -> None:
    sub = quota_app.subscribe("quota.test", "the-recipient", sink="counting", token="t")
    for n in range(5):
        quota_app.publish("quota.test", {"n": n})
    quota_app.run_worker(WorkerLimits(concurrency=4, max_idle_time=1.0, time_limit=30))
    assert len(CountingSink.delivered) == 2
    deliveries = [d for d in quota_app.store.recent_deliveries(50) if d.subscription_id == sub.id]
    assert len(deliveries) == 5
    held = [d for d in deliveries if d.status != "delivered"]
    assert len(held) == 3
    assert all(d.attempts == 0 for d in held)  # waiting, no attempt used
    # after_attempts saw exactly what was recorded
    assert sorted(s.delivery.id for s in RecipientQuota.seen) == sorted(
        r.delivery_id for r in CountingSink.delivered)


def test_middleware_runs_on_the_engine_loop_only(quota_app: App) -> None:
    quota_app.subscribe("quota.test", "r", sink="counting", token="t")
    quota_app.publish("quota.test", {"n": 1})
    quota_app.run_worker(WorkerLimits(max_idle_time=1.0, time_limit=30))
    assert RecipientQuota.threads == {"asyncevents-engine"}


def test_built_in_features_register_through_the_entry_point_and_can_be_turned_off() -> None:
    def kinds(plugins: Plugins) -> set[str]:
        made = [factory(_context()) for factory in plugins.middleware()]
        return {type(m).__name__ for m in made if m is not None}

    assert {"Protection", "OperationalEvents"} <= kinds(Plugins.load())
    assert kinds(Plugins.load(disabled=["protection"])) >= {"OperationalEvents"}
    assert "Protection" not in kinds(Plugins.load(disabled=["protection"]))
    assert kinds(Plugins.load(disabled=["protection", "operational"])) == set()
    assert issubclass(Protection, Middleware) and issubclass(OperationalEvents, Middleware)


def _context() -> PipelineContext:
    async def io(fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    return PipelineContext(Settings(), store=None, io=io)  # type: ignore[arg-type]
