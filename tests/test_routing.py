"""Named queues: ``[routing]``, ``worker --queues`` in priority order, retries back to their queue.

Over the real transports (SQLite and PostgreSQL queues, RabbitMQ), and
``memory://`` for the database schedule's retries.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection
from pytest_httpserver import HTTPServer

from asyncevents.core.app import App
from asyncevents.core.events.routing import Router, parse_queues
from asyncevents.core.messages import DeliverMessage, TriggerMessage, decode
from asyncevents.core.settings import Settings, load_settings
from asyncevents.core.transport.topology import Topology
from asyncevents.core.worker.worker import WorkerLimits, WorkerReport
from asyncevents.errors import ConfigError
from tests.helpers import Recorder, run_cli

ROUTING = {"shop.urgent.*": "critical"}


def _worker(app: App, queues: list[str] | None, idle: float = 1.5) -> WorkerReport:
    worker = app.worker(WorkerLimits(concurrency=1, max_idle_time=idle, time_limit=90))
    worker.use_queues(queues)
    return worker.run()


def _delete_named_queues(settings: Settings, names: tuple[str, ...]) -> None:
    """What tests.helpers.delete_amqp_queues does, for named queues and their delay queues."""
    if not settings.transport_url.startswith("amqp"):
        return
    topology = Topology(settings.queue_prefix, quorum=True, names=names)
    with Connection(settings.transport_url, connect_timeout=5) as conn:
        channel = conn.channel()
        for queue in topology.queues:
            try:
                queue(channel).delete()
            except Exception:
                channel = conn.channel()


@pytest.fixture
def routed(transport_settings: Settings) -> Any:
    """The transport's settings with ``shop.urgent.*`` routed to ``critical``."""
    settings = transport_settings.model_copy(update={"routing": ROUTING})
    yield settings
    with suppress(Exception):
        _delete_named_queues(settings, ("critical",))


# --- the rules ------------------------------------------------------------------


def test_rules_with_a_sink_come_first_then_file_order() -> None:
    router = Router({"sales.order.*": "critical", "sales.order.* http": "webhooks",
                     "sales.*": "bulk", "sales.order.paid": "never"})
    assert router.trigger_queue("sales.order.paid") == "critical"  # first in file order
    assert router.deliver_queue("sales.order.paid", "http") == "webhooks"
    assert router.deliver_queue("sales.order.paid", "python") == "critical"
    assert router.trigger_queue("sales.refund") == "bulk"
    assert router.trigger_queue("crm.contact") == "default"
    assert router.queues == ["critical", "webhooks", "bulk", "never", "default"]
    assert Router().queues == ["default"]
    assert Router().deliver_queue("any", "http") == "default"


@pytest.mark.parametrize(("routing", "complaint"), [
    ({"a b c": "x"}, "must be an event pattern, optionally followed by one space and a sink"),
    ({"sales.*": "Critical"}, "'Critical' is not a queue name"),
    ({"sales.*": "delay"}, "'delay' cannot name a queue"),  # the transports' own word
    ({"sales.*": {"queue": "x"}}, "must name a queue (a string), not a table"),
    ({"sales.* ht/tp": "x"}, "'ht/tp' is not a sink name"),
])
def test_bad_routing_is_one_line(routing: dict[str, Any], complaint: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(routing=routing)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("invalid setting routing: routing ")
    assert complaint in message and "Value error" not in message


def test_routing_from_the_toml_file(tmp_path: Path) -> None:
    (tmp_path / "asyncevents.toml").write_text(
        '[routing]\n"sales.order.*" = "critical"\n"sales.order.* http" = "webhooks"\n')
    settings = load_settings()
    assert Router(settings.routing).deliver_queue("sales.order.x", "http") == "webhooks"
    (tmp_path / "asyncevents.toml").write_text('[routing]\n"sales.order.*" = "No Good"\n')
    result = run_cli("worker", "--max-idle-time", "0", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: invalid setting routing")
    assert "Traceback" not in result.stderr


def test_queues_option_is_checked(tmp_path: Path) -> None:
    assert parse_queues(" critical, default ") == ["critical", "default"]
    for bad, complaint in (("critical,critical", "twice"), (",", "at least one"),
                           ("Bad!", "not a queue name")):
        with pytest.raises(ConfigError, match=complaint):
            parse_queues(bad)
    (tmp_path / "asyncevents.toml").write_text('[routing]\n"sales.*" = "critical"\n')
    result = run_cli("worker", "--queues", "critcal,default", "--max-idle-time", "0",
                     cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == ("error: --queues: no [routing] rule sends anything to "
                                     "queue 'critcal' (known: critical, default)")


def test_queue_names_keep_the_default_ones() -> None:
    topology = Topology("shop", names=("critical", "default"))
    assert topology.queue("trigger").name == "shop.trigger"  # as before named queues
    assert topology.delay_queue("deliver", 1000).name == "shop.delay.deliver.1000"
    assert topology.queue("deliver", "critical").name == "shop.critical.deliver"
    delay = topology.delay_queue("deliver", 1000, "critical")
    assert delay.name == "shop.delay.critical.deliver.1000"
    assert delay.queue_arguments["x-dead-letter-routing-key"] == "critical.deliver"
    assert [q.name for q in topology.queues] == [
        "shop.critical.trigger", "shop.critical.deliver", "shop.trigger", "shop.deliver"]


def test_the_wire_format_stays_compatible() -> None:
    old = {"delivery_id": "d", "deaths": 1, "replay": False}  # from before named queues
    assert decode("deliver", old) == DeliverMessage("d", 1)
    assert DeliverMessage("d", 1).body() == old  # default: no new field
    routed = DeliverMessage("d", 2, queue="critical")
    assert decode("deliver", routed.body()) == routed
    assert routed.with_deaths(3).queue == "critical"  # a retry keeps its queue
    # The queue a message was taken from wins over its body.
    assert decode("deliver", routed.body(), queue="default").queue == "default"
    trigger = decode("trigger", {"event_id": "e", "name": "n", "data": {}, "deaths": 0,
                                 "published_at": "2026-01-01T00:00:00+00:00",
                                 "queue": "critical"})
    assert isinstance(trigger, TriggerMessage) and trigger.died().queue == "critical"


# --- over the real transports ---------------------------------------------------------


def test_a_worker_per_queue(routed: Settings, httpserver: HTTPServer) -> None:
    app = App(routed)
    recorder = Recorder(httpserver)
    app.subscribe("*", recorder.route("/hook"), token="t")
    urgent = {app.publish("shop.urgent.order", {"n": n}) for n in range(4)}
    slow = {app.publish("shop.slow.report", {"n": n}) for n in range(3)}

    report = _worker(app, ["critical"])
    assert {hit.json["id"] for hit in recorder.hits} == urgent
    assert report.handled == 4
    # The default queue's events were not even dispatched.
    assert {d.event_name for d in app.store.recent_deliveries(100)} == {"shop.urgent.order"}

    # Now both at once, each on its own queue, with new events on each.
    urgent |= {app.publish("shop.urgent.order", {"n": n}) for n in range(5)}
    slow |= {app.publish("shop.slow.report", {"n": n}) for n in range(2)}
    reports: dict[str, WorkerReport] = {}
    other = App(routed)
    thread = threading.Thread(target=lambda: reports.update(critical=_worker(other,
                                                                             ["critical"])))
    thread.start()
    reports["default"] = _worker(app, ["default"])
    thread.join(timeout=120)
    assert {hit.json["id"] for hit in recorder.hits} == urgent | slow
    assert len(recorder.hits) == len(urgent | slow)
    assert reports["critical"].handled == 5  # the new urgent events, and nothing else
    assert reports["default"].handled == 5   # the three old slow ones and the two new
    other.close()
    app.close()


def test_earlier_queues_drain_first(routed: Settings, httpserver: HTTPServer) -> None:
    app = App(routed)
    recorder = Recorder(httpserver)
    app.subscribe("*", recorder.route("/hook"), token="t")
    # More than a worker's prefetch window (150 here) in each: consumed
    # together, RabbitMQ would interleave them; and the default backlog is
    # the older, so in one queue it would all go first.
    app.publish_many([("shop.slow.report", {"n": n}) for n in range(200)])
    app.publish_many([("shop.urgent.order", {"n": n}) for n in range(200)])

    report = _worker(app, ["critical", "default"])

    kinds = "".join("C" if hit.json["type"].startswith("shop.urgent") else "d"
                    for hit in recorder.hits)
    assert kinds == "C" * 200 + "d" * 200
    assert report.handled == 400
    app.close()


def _flaky_delivery(settings: Settings, httpserver: HTTPServer) -> None:
    settings = settings.model_copy(update={"backoff_base": 0.2, "backoff": "fixed"})
    app = App(settings)
    recorder = Recorder(httpserver)
    app.subscribe("*", recorder.route("/flaky", statuses=[500, 503]), token="t")
    event_id = app.publish("shop.urgent.order", {})

    # A worker of the critical queue alone: a retry sent to default would never come back.
    _worker(app, ["critical"], idle=2.5)

    hits = recorder.on("/flaky")
    assert len(hits) == 3 and {hit.json["id"] for hit in hits} == {event_id}
    (delivery,) = app.store.recent_deliveries(5)
    assert delivery.status == "delivered" and delivery.attempts == 3
    app.close()


def test_retries_return_to_their_queue(routed: Settings, httpserver: HTTPServer) -> None:
    _flaky_delivery(routed, httpserver)


def test_retries_from_the_database_schedule_return_to_their_queue(
        make_settings: Any, httpserver: HTTPServer) -> None:
    # memory:// has no delays: the retry waits in the store's schedule, then the pump sends it.
    _flaky_delivery(make_settings(transport_url="memory://", routing=ROUTING), httpserver)


def test_the_readme_section_runs_as_written(tmp_path: Path) -> None:
    section = (Path(__file__).resolve().parent.parent / "README.md").read_text(
        encoding="utf-8").split("\n## Named queues\n", 1)[1]
    found = re.search(r"^```sh\n(.*?)^```$", section, re.MULTILINE | re.DOTALL)
    assert found, "no sh block under '## Named queues'"
    script = tmp_path / "named-queues.sh"
    script.write_text(found.group(1), encoding="utf-8")
    work = tmp_path / "fresh"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCEVENTS_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    done = subprocess.run(["bash", "-e", "-o", "pipefail", str(script)], cwd=work, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "error:" not in done.stderr
    assert "{'asyncevents.critical.trigger': 1, 'asyncevents.trigger': 1}" in done.stdout
    assert '"handled": 2' in done.stdout
    assert done.stderr.strip().splitlines()[-1] == (
        "nothing waiting on queue(s) critical: the worker did not start")


def test_deliveries_routed_by_sink_wait_for_their_queue(transport_settings: Settings,
                                                        httpserver: HTTPServer) -> None:
    settings = transport_settings.model_copy(update={
        "routing": {"shop.* http": "webhooks", "shop.*": "critical"}})
    app = App(settings)
    recorder = Recorder(httpserver)
    app.subscribe("shop.*", recorder.route("/hook"), token="t")
    event_id = app.publish("shop.order", {})
    try:
        # The event's worker dispatches it, but does not attempt a webhook routed elsewhere.
        assert _worker(app, ["critical"]).handled == 1
        (delivery,) = app.store.recent_deliveries(5)
        assert delivery.status == "pending" and recorder.hits == []
        assert _worker(app, ["webhooks"]).handled == 1
        assert [hit.json["id"] for hit in recorder.hits] == [event_id]
        assert app.store.get_delivery(delivery.id).status == "delivered"
    finally:
        app.close()
        with suppress(Exception):
            _delete_named_queues(settings, ("webhooks", "critical"))
