"""``asyncevents stats``: queue figures from each real transport, delivery counts from the store."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from pytest_httpserver import HTTPServer
from sqlalchemy import update

from asyncevents.core.app import App
from asyncevents.core.clock import utcnow
from asyncevents.core.models import Subscription
from asyncevents.core.store import Store
from asyncevents.core.store.schema import deliveries
from asyncevents.core.transport.base import QueueStats, Received
from asyncevents.core.worker.worker import WorkerLimits
from tests.helpers import Recorder, run_cli, run_readme_block


def _queue(app: App, route: str) -> QueueStats:
    name = f"{app.settings.queue_prefix}.{route}"
    (found,) = [q for q in app.transport.queue_stats() if q.name == name]
    return found


def test_ready_counts_with_no_worker(transport_settings: Any) -> None:
    app = App(transport_settings)
    app.transport.check()
    for n in range(3):
        app.publish("sales.order.created", {"n": n})
    app.publish("sales.order.created", {"n": 9}, delay=600)
    trigger, deliver = _queue(app, "trigger"), _queue(app, "deliver")
    assert trigger.ready == 3 and deliver.ready == 0
    if app.transport.scheme == "amqp":
        # queue.declare tells ready messages and consumers; nothing more
        assert trigger.consumers == 0
        assert trigger.in_flight is None and trigger.delayed is None
    else:
        assert (trigger.in_flight, trigger.delayed) == (0, 1)  # the delayed publish
        assert deliver.delayed == 0
    app.close()


def test_a_held_message_is_in_flight(transport_settings: Any) -> None:
    app = App(transport_settings)
    app.transport.check()
    app.publish_many([("sales.order.created", {"n": n}) for n in range(3)])
    held: list[Received] = []
    consumption = app.transport.consume(["trigger"], held.append, lambda _: None, prefetch=1)
    try:
        deadline = time.monotonic() + 20
        while not held and time.monotonic() < deadline:
            consumption.drain(0.2)
        assert len(held) == 1
        trigger = _queue(app, "trigger")
        assert trigger.ready == 2
        if app.transport.scheme == "amqp":
            assert trigger.consumers == 1 and trigger.in_flight is None
        else:
            assert trigger.in_flight == 1
        held[0].ack()
    finally:
        consumption.cancel()
        consumption.close()
    assert _queue(app, "trigger").ready == 2
    app.close()


def _counts(rows: list[Any], key: str) -> dict[str, tuple[int, int, int, int]]:
    return {r.key: (r.pending, r.retrying, r.dead_last_hour, r.dead_last_day)
            for r in rows if r.key == key}


def test_delivery_counts_by_event_and_subscription(database_url: str,
                                                   make_settings: Callable[..., Any]) -> None:
    settings = make_settings(database_url=database_url)
    Store.open(database_url, auto_migrate=True).close()
    app = App(settings)
    orders = app.subscribe("sales.order.*", "http://127.0.0.1:9/a", token="t")
    users = app.subscribe("customer.created", "http://127.0.0.1:9/b", token="t")

    def deliver(sub: Subscription, name: str) -> str:
        (made,) = app.store.ensure_deliveries(event_id=str(uuid.uuid4()), event_name=name,
                                              published_at=utcnow(), payload={},
                                              targets=[sub])
        return made.id

    deliver(orders, "sales.order.created")                    # pending
    retrying = deliver(orders, "sales.order.created")
    app.store.set_delivery_status(retrying, "retrying", next_attempt_at=utcnow())
    dead_now = deliver(orders, "sales.order.shipped")
    app.store.set_delivery_status(dead_now, "dead")
    dead_earlier = deliver(users, "customer.created")
    app.store.set_delivery_status(dead_earlier, "dead")
    dead_long_ago = deliver(users, "customer.created")
    app.store.set_delivery_status(dead_long_ago, "dead")
    done = deliver(users, "customer.created")
    app.store.set_delivery_status(done, "delivered")
    with app.store.engine.begin() as conn:  # age two of the dead ones
        conn.execute(update(deliveries).where(deliveries.c.id == dead_earlier)
                     .values(updated_at=utcnow() - timedelta(hours=3)))
        conn.execute(update(deliveries).where(deliveries.c.id == dead_long_ago)
                     .values(updated_at=utcnow() - timedelta(days=3)))

    by_event = app.store.delivery_counts_by_event()
    assert [r.key for r in by_event] == ["customer.created", "sales.order.created",
                                         "sales.order.shipped"]
    assert _counts(by_event, "sales.order.created") == {"sales.order.created": (1, 1, 0, 0)}
    assert _counts(by_event, "sales.order.shipped") == {"sales.order.shipped": (0, 0, 1, 1)}
    assert _counts(by_event, "customer.created") == {"customer.created": (0, 0, 0, 1)}
    by_sub = {r.key: r for r in app.store.delivery_counts_by_subscription()}
    assert set(by_sub) == {orders.id, users.id}
    order_row = by_sub[orders.id]
    assert (order_row.pending, order_row.retrying, order_row.dead_last_hour,
            order_row.dead_last_day) == (1, 1, 1, 1)
    assert (order_row.pattern, order_row.sink) == ("sales.order.*", "http")
    assert by_sub[users.id].dead_last_day == 1 and by_sub[users.id].pending == 0
    app.close()


def test_after_a_worker_with_failing_receivers(transport_settings: Any,
                                               httpserver: HTTPServer) -> None:
    app = App(transport_settings.model_copy(update={"backoff": "fixed", "backoff_base": 0.1,
                                                    "max_deaths": 1}))
    recorder = Recorder(httpserver)
    gone = app.subscribe("sales.*", recorder.route("/bad", [400] * 10), token="t")
    flaky = app.subscribe("sales.*", recorder.route("/down", [500] * 10), token="t",
                          retry_policy={"backoff": "fixed", "base": 3600, "max_backoff": 3600,
                                        "max_deaths": 3})
    fine = app.subscribe("sales.*", recorder.route("/ok"), token="t")
    app.publish_many([("sales.order.created", {"n": n}) for n in range(2)])
    report = app.run_worker(WorkerLimits(concurrency=2, max_idle_time=1.5, time_limit=60))
    assert report.reason is not None

    by_sub = {r.key: r for r in app.store.delivery_counts_by_subscription()}
    assert by_sub[gone.id].dead_last_hour == 2 and by_sub[gone.id].retrying == 0
    assert by_sub[flaky.id].retrying == 2 and by_sub[flaky.id].dead_last_day == 0
    assert fine.id not in by_sub  # delivered: nothing to count
    (event,) = app.store.delivery_counts_by_event()
    assert (event.key, event.pending, event.retrying, event.dead_last_hour,
            event.dead_last_day) == ("sales.order.created", 0, 2, 2, 2)
    deliver, trigger = _queue(app, "deliver"), _queue(app, "trigger")
    assert (trigger.ready, deliver.ready) == (0, 0)
    if app.transport.scheme == "amqp":
        assert deliver.delayed is None  # in delay queues RabbitMQ will not list
    else:
        assert (deliver.delayed, deliver.in_flight) == (2, 0)  # the two retries, an hour away
    app.close()


def _cli(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, cwd=workdir, env={"ASYNCEVENTS_STRICT_EVENTS": "false"})


def test_cli_stats(tmp_path: Path) -> None:
    for n in range(2):
        assert _cli(tmp_path, "publish", "sales.order.created", "--data", f'{{"n": {n}}}'
                    ).returncode == 0
    result = _cli(tmp_path, "stats", "--json")
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["transport"] == "sqla"
    assert found["queues"] == [
        {"name": "asyncevents.trigger", "ready": 2, "in_flight": 0, "delayed": 0,
         "consumers": None},
        {"name": "asyncevents.deliver", "ready": 0, "in_flight": 0, "delayed": 0,
         "consumers": None}]
    assert found["events"] == [] and found["subscriptions"] == []
    table = _cli(tmp_path, "stats")
    assert table.returncode == 0, table.stderr
    trigger = next(line for line in table.stdout.splitlines() if "asyncevents.trigger" in line)
    assert trigger.split("│")[2].strip() == "2"
    assert "no deliveries by event" in table.stdout


def test_cli_stats_with_the_broker_down(tmp_path: Path) -> None:
    result = run_cli("stats", cwd=tmp_path,
                     env={"ASYNCEVENTS_TRANSPORT_URL": "amqp://guest:guest@127.0.0.1:1//"})
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot read the queues at amqp://")
    assert "guest:guest" not in result.stderr


def test_readme_stats_example_runs_as_written(tmp_path: Path) -> None:
    result = run_readme_block("### Queue and delivery statistics", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "asyncevents.trigger" in result.stdout and '"queues"' in result.stdout


def test_redis_counts_ready_and_the_schedule_as_delayed(make_settings: Callable[..., Any],
                                                        redis_url: str) -> None:
    from asyncevents.cli.stats import collect

    app = App(make_settings(transport_url=redis_url))
    try:
        app.transport.check()
        app.publish_many([("sales.order.created", {"n": n}) for n in range(2)])
        app.publish("sales.order.created", {"n": 9}, delay=600)  # the database schedule
        found = {q["name"]: q for q in collect(app)["queues"]}
        trigger = found[f"{app.settings.queue_prefix}.trigger"]
        assert (trigger["ready"], trigger["delayed"], trigger["in_flight"]) == (2, 1, None)
        assert found[f"{app.settings.queue_prefix}.deliver"]["delayed"] == 0
    finally:
        conn = app.transport.connect()
        with conn.channel() as channel:
            for queue in app.transport.topology.queues:
                channel.queue_delete(queue.name)
            channel.exchange_delete(app.settings.queue_prefix)
        conn.release()
        app.close()
