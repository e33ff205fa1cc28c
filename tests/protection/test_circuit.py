"""Circuit breaker, auto-disable and operational events (issue 15, item 5), over a worker,
real local receivers and SQLite and PostgreSQL stores: a receiver that fails then recovers
(its circuit opens, its deliveries wait instead of dying, a probe closes it), the
operational events received by a second receiver, never about itself."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from asyncevents.core.app import App
from asyncevents.core.settings import Settings
from asyncevents.core.worker.worker import WorkerLimits
from tests.api.conftest import Api, _keep_logging_config, make_api  # noqa: F401
from tests.api.helpers import login
from tests.helpers import Recorder, run_cli
from tests.protection.helpers import WHSEC


def _wait(what: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.1)


def _events(recorder: Recorder, path: str) -> list[tuple[str, dict[str, Any]]]:
    return [(hit.json["type"], hit.json["data"]) for hit in recorder.on(path)]


def _worker(app: App, seconds: float, idle: float = 4) -> threading.Thread:
    thread = threading.Thread(target=app.run_worker, args=(WorkerLimits(
        concurrency=4, time_limit=seconds, max_idle_time=idle),), daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_a_failing_receiver_opens_the_circuit_its_deliveries_wait_a_probe_closes_it(
        store: str, server: HTTPServer, app_on: Callable[..., App]) -> None:
    # Without the circuit, 0.2 s retries would kill every delivery (5 deaths) long
    # before the receiver recovers; with it they wait for the probe.
    app = app_on(store, circuit_consecutive_failures=2, circuit_cooldown=1.0, max_deaths=5,
                 backoff="fixed", backoff_base=0.2, max_backoff=0.2)
    failing = threading.Event()
    failing.set()

    def receiver(req: Request) -> Response:
        return Response("down" if failing.is_set() else "ok",
                        status=503 if failing.is_set() else 200)

    server.expect_request("/a", method="POST").respond_with_handler(receiver)
    recorder = Recorder(server)
    ops = recorder.route("/ops")
    try:
        sub = app.subscribe("sales.order.created", server.url_for("/a"), token=WHSEC)
        watcher = app.subscribe("asyncevents.*", ops, token=WHSEC)
        worker = _worker(app, 60)
        app.publish("sales.order.created", {"n": 1})
        _wait(lambda: any(t == "asyncevents.subscription.circuit_opened"
                          for t, _ in _events(recorder, "/ops")))
        circuit = app.store.circuit_health([sub.id])[sub.id]
        assert circuit.state == "open" and circuit.consecutive_failures >= 2
        assert circuit.last_error and "503" in circuit.last_error
        for n in range(2, 7):  # published while the circuit is open: they wait
            app.publish("sales.order.created", {"n": n})
        time.sleep(2.5)  # a probe or two, failing
        failing.clear()
        _wait(lambda: sum(d.status == "delivered" for d in app.store.recent_deliveries(100)
                          if d.subscription_id == sub.id) == 6)
        worker.join(60)
        mine = [d for d in app.store.recent_deliveries(100) if d.subscription_id == sub.id]
        assert [d.status for d in mine] == ["delivered"] * 6  # none died waiting
        events = _events(recorder, "/ops")
        kinds = [t for t, data in events if data.get("subscription_id") == sub.id]
        assert kinds[:1] == ["asyncevents.subscription.circuit_opened"]
        assert "asyncevents.subscription.circuit_closed" in kinds
        assert all(data.get("subscription_id") != watcher.id for _, data in events)
        assert app.store.circuit_health([sub.id])[sub.id].state == "closed"
        # `subscriptions show` and the REST API show the circuit.
        shown = app.store.circuit_health([sub.id])[sub.id].public()
        assert shown["state"] == "closed" and shown["last_error"]
    finally:
        app.close()


def test_dead_deliveries_and_auto_disable_publish_operational_events(
        server: HTTPServer, make_settings: Callable[..., Settings]) -> None:
    app = App(make_settings(circuit_consecutive_failures=1000, circuit_min_attempts=1000,
                            backoff="fixed", backoff_base=0.3, max_backoff=0.3))
    recorder = Recorder(server)
    ops = recorder.route("/ops")
    down = threading.Event()
    down.set()
    server.expect_request("/gone", method="POST").respond_with_handler(
        lambda req: Response("down", status=500) if down.is_set() else Response("ok"))
    gone = server.url_for("/gone")
    try:
        once = app.subscribe("sales.order.created", recorder.route("/once", statuses=[400]),
                             token=WHSEC)
        # Fails for good: disabled after 2 s (disable_after is in hours) without a success.
        dying = app.subscribe("sales.order.created", gone, token=WHSEC,
                              disable_after=2 / 3600, retry_policy={"max_deaths": 1000})
        asked = app.subscribe("sales.order.created", recorder.route("/410", statuses=[410]),
                              token=WHSEC)
        watcher = app.subscribe("asyncevents.*", ops, token=WHSEC)
        worker = _worker(app, 40)
        app.publish("sales.order.created", {"id": 7})
        _wait(lambda: any(t == "asyncevents.subscription.disabled"
                          and d["subscription_id"] == dying.id
                          for t, d in _events(recorder, "/ops")))
        worker.join(60)
        events = _events(recorder, "/ops")
        dead = [d for t, d in events if t == "asyncevents.delivery.dead"]
        assert any(d["subscription_id"] == once.id and "HTTP 400" in d["error"] for d in dead)
        disabled = {d["subscription_id"]: d for t, d in events
                    if t == "asyncevents.subscription.disabled"}
        assert sorted(disabled) == sorted([dying.id, asked.id])
        assert disabled[dying.id]["last_error"].startswith("HTTP 500")
        assert disabled[asked.id]["last_error"].startswith("HTTP 410")  # the receiver asked
        assert app.store.get_subscription(dying.id).active is False
        assert all(d.get("subscription_id") != watcher.id for _, d in events)
        # The disabled subscription's delivery waits, visible, neither dead nor attempted...
        (left,) = [d for d in app.store.recent_deliveries(100)
                   if d.subscription_id == dying.id]
        assert left.status == "retrying"
        tried = left.attempts
        # ... and resumes once the subscription is enabled again.
        down.clear()
        app.update_subscription(dying.id, active=True)
        worker = _worker(app, 60, idle=20)  # it comes back within 15 s
        _wait(lambda: app.store.get_delivery(left.id).status == "delivered", timeout=40)
        assert app.store.get_delivery(left.id).attempts == tried + 1
        worker.join(60)
    finally:
        app.close()


def test_the_operational_events_are_in_the_catalog_and_show_lists_the_circuit(
        tmp_path: Any) -> None:
    (tmp_path / "asyncevents.toml").write_text('allowed_networks = ["127.0.0.0/8"]\n')
    listed = run_cli("events", "--json", cwd=tmp_path)
    names = {e["name"] for e in json.loads(listed.stdout)}
    assert {"asyncevents.subscription.circuit_opened", "asyncevents.subscription.circuit_closed",
            "asyncevents.subscription.disabled", "asyncevents.delivery.dead"} <= names
    # Subscribable in strict mode like any event.
    made = run_cli("subscribe", "asyncevents.subscription.*", "http://127.0.0.1:9/ops",
                   "--token", WHSEC, "--json", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    sub_id = json.loads(made.stdout)["id"]
    shown = json.loads(run_cli("subscriptions", "show", sub_id, "--json", cwd=tmp_path).stdout)
    assert shown["circuit"]["state"] == "closed" and shown["circuit"]["failure_ratio"] is None


def test_rest_and_console_show_the_circuit(make_api: Callable[..., Api]) -> None:  # noqa: F811
    api = make_api()
    sub = api.subscription()
    got = api.client.get(f"/v1/subscriptions/{sub.id}/circuit", headers=api.auth())
    assert got.status_code == 200 and got.json()["state"] == "closed"
    missing = api.client.get("/v1/subscriptions/nope/circuit", headers=api.auth())
    assert missing.status_code == 404
    from asyncevents.core.clock import utcnow
    from asyncevents.core.store import CircuitPolicy, Outcome
    policy = CircuitPolicy(consecutive_failures=2)
    changes = api.app.store.record_health(
        [Outcome(sub.id, False, "HTTP 503 Service Unavailable", utcnow())] * 2, policy)
    assert [c.change for c in changes] == ["opened"]
    assert api.client.get(f"/v1/subscriptions/{sub.id}/circuit",
                          headers=api.auth()).json()["state"] == "open"
    login(api)
    page = api.client.get(f"/console/subscriptions/{sub.id}").text
    assert 'id="circuit"' in page and ">open<" in page and "HTTP 503" in page


def test_an_idle_worker_writes_the_successes_it_held_back(
        server: HTTPServer, app_on: Callable[..., App]) -> None:
    # A healthy subscription's successes are counted at most once a second;
    # a worker with nothing more to do must still write them.
    app = app_on("sqlite")
    recorder = Recorder(server)
    try:
        sub = app.subscribe("sales.order.created", recorder.route("/hook"), token=WHSEC)
        worker = _worker(app, seconds=30, idle=8)
        app.publish("sales.order.created", {"n": 1})
        _wait(lambda: len(recorder.on("/hook")) == 1)
        _wait(lambda: app.store.circuit_health([sub.id])[sub.id].last_success_at is not None)
        first = app.store.circuit_health([sub.id])[sub.id].last_success_at
        time.sleep(0.3)
        app.publish("sales.order.created", {"n": 2})  # healthy now: its success is held
        _wait(lambda: len(recorder.on("/hook")) == 2)
        _wait(lambda: app.store.circuit_health([sub.id])[sub.id].last_success_at != first,
              timeout=4.0)  # written within about a second, while the worker idles
        assert worker.is_alive()
        worker.join(30)
    finally:
        app.close()
