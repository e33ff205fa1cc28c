"""Python handlers (``@handler``, sink ``python``) over real stores, queues and workers."""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
import uuid
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from asyncevents import Event, hookimpl
from asyncevents.core.app import App
from asyncevents.core.models import Delivery, Subscription
from asyncevents.core.plugins import Plugins
from asyncevents.core.settings import Settings, load_settings
from asyncevents.core.sink import PYTHON_SINK, DeliveryRequest
from asyncevents.core.subscribing.handler_sync import sync_handler_subscriptions
from asyncevents.core.subscribing.handlers import handler
from asyncevents.errors import ConfigError, InvalidRecipient
from asyncevents.sinks.python import PythonSink
from tests import handlers_for_tests, handlers_for_tests_plugin
from tests.helpers import drain, sqlite_rows
from tests.killrun import _env

MODULE = "tests.handlers_for_tests"
ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
TOKEN = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
FAST: dict[str, Any] = {"backoff": "fixed", "backoff_base": 0.05}


@pytest.fixture(autouse=True)
def _fresh_calls() -> Iterator[None]:
    handlers_for_tests.CALLS.clear()
    handlers_for_tests_plugin.SEEN.clear()
    yield


def _python_subs(app: App) -> dict[str, Subscription]:
    subs = [s for s in app.store.list_subscriptions() if s.sink == PYTHON_SINK]
    by_path = {s.recipient: s for s in subs}
    assert len(by_path) == len(subs), "two subscriptions for one handler"
    return by_path


def _deliveries(app: App, recipient: str) -> list[Delivery]:
    return [d for d in app.store.recent_deliveries(500) if d.recipient == recipient]


def _cli(settings: Settings, cwd: Path, *args: str,
         extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = _env(settings)
    # The worker imports tests.handlers_for_tests: the repository must be on its path.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env.update(extra or {})
    return subprocess.run([sys.executable, "-m", "asyncevents", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_a_handler_that_fails_twice_then_succeeds(transport_settings: Settings,
                                                  tmp_path: Path) -> None:
    app = App(transport_settings, handler_modules=[MODULE], **FAST)
    event_id = app.publish("test.flaky.order", {"id": 42})

    drain(app)

    calls = handlers_for_tests.calls("flaky")
    assert [c.attempt for c in calls] == [1, 2, 3]
    first = calls[0]
    assert isinstance(first, Event)
    assert (first.id, first.name, first.data) == (event_id, "test.flaky.order", {"id": 42})
    assert first.published_at.tzinfo is not None
    assert {c.delivery_id for c in calls} == {first.delivery_id}  # one copy, three attempts
    sub = _python_subs(app)[f"{MODULE}:flaky"]
    assert first.subscription_id == sub.id and sub.event_name == "test.flaky.*"
    delivery = app.store.get_delivery(first.delivery_id)
    assert (delivery.status, delivery.attempts, delivery.sink) == ("delivered", 3, "python")
    assert not handlers_for_tests.calls("permanent")  # fan-out by pattern, as for webhooks

    # The trace and the search, through the CLI as a user reads them.
    trace = json.loads(_cli(app.settings, tmp_path, "trace", delivery.id, "--json").stdout)
    assert [a["success"] for a in trace["attempts"]] == [False, False, True]
    assert trace["attempts"][0]["error"].startswith("RuntimeError: flaky handler, attempt 1")
    assert "handlers_for_tests.py:" in trace["attempts"][0]["error"]  # where it raised
    found = json.loads(_cli(app.settings, tmp_path, "search",
                            "sink:python AND status:delivered", "--json").stdout)
    assert [d["uuid"] for d in found] == [delivery.id]

    app.replay(delivery.id)
    drain(app)

    assert [c.attempt for c in handlers_for_tests.calls("flaky")] == [1, 2, 3, 4]
    replayed = app.store.get_delivery(delivery.id)
    assert (replayed.status, replayed.attempts) == ("delivered", 4)
    assert len(_python_subs(app)) == 4  # the second worker start created nothing twice
    app.close()


def test_permanent_error_retry_after_and_filter(make_settings: Any) -> None:
    app = App(make_settings(handler_modules=[MODULE], **FAST))
    app.publish("test.permanent", {"id": 7})
    app.publish("test.later", {"id": 8})
    app.publish("test.filtered", {"total": 50})
    app.publish("test.filtered", {"total": 150})

    drain(app)

    (dead,) = _deliveries(app, f"{MODULE}:permanent")
    assert (dead.status, dead.attempts) == ("dead", 1)  # at once, no retry
    (attempt,) = app.store.list_attempts(dead.id)
    assert attempt.error == "PermanentSinkError: order 7 is cancelled"
    assert len(handlers_for_tests.calls("permanent")) == 1

    (later,) = _deliveries(app, f"{MODULE}:later")
    assert (later.status, later.attempts) == ("delivered", 2)
    first, _ = app.store.list_attempts(later.id)
    assert first.error == "RetryableSinkError: the warehouse is busy"

    # The handler's filter is its subscription's: only the big order reached it.
    assert [c.data for c in handlers_for_tests.calls("big_orders")] == [{"total": 150}]
    sub = _python_subs(app)[f"{MODULE}:big_orders"]
    assert (sub.filter, sub.retry_policy) == ("data.total:[100 TO *]", {"max_deaths": 2})
    app.close()


def test_handler_modules_from_toml_and_the_cli_worker(make_settings: Any, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "asyncevents.toml").write_text(f'handler_modules = ["{MODULE}"]\n')
    assert load_settings().handler_modules == [MODULE]
    monkeypatch.setenv("ASYNCEVENTS_HANDLER_MODULES", f"{MODULE}, tests.other")
    assert load_settings().handler_modules == [MODULE, "tests.other"]  # the env wins
    monkeypatch.setenv("ASYNCEVENTS_HANDLER_MODULES", "my-shop.handlers")
    with pytest.raises(ConfigError, match=r"handler_modules.*'my-shop\.handlers' is not a module"):
        load_settings()
    monkeypatch.delenv("ASYNCEVENTS_HANDLER_MODULES")

    # `asyncevents worker` in that directory reads the file and creates the subscriptions.
    settings = make_settings()
    worker = _cli(settings, tmp_path, "worker", "--max-idle-time", "0.5")
    assert worker.returncode == 0, worker.stderr
    listed = json.loads(_cli(settings, tmp_path, "subscriptions", "list", "--json").stdout)
    python = {s["recipient"]: s for s in listed if s["sink"] == "python"}
    assert set(python) == {f"{MODULE}:{name}"
                           for name in ("big_orders", "flaky", "later", "permanent")}
    assert python[f"{MODULE}:flaky"]["event_name"] == "test.flaky.*"
    again = _cli(settings, tmp_path, "worker", "--max-idle-time", "0.5")
    assert again.returncode == 0, again.stderr
    relisted = json.loads(_cli(settings, tmp_path, "subscriptions", "list", "--json").stdout)
    assert sorted(s["id"] for s in relisted) == sorted(s["id"] for s in listed)  # idempotent

    # A module that does not import stops the worker at start-up, in one line.
    (tmp_path / "asyncevents.toml").write_text('handler_modules = ["nowhere.handlers"]\n')
    broken = _cli(settings, tmp_path, "worker", "--max-idle-time", "0.5")
    assert broken.returncode == 1
    assert broken.stderr.strip().splitlines() == [
        "error: handler_modules: cannot import 'nowhere.handlers': ModuleNotFoundError: "
        "No module named 'nowhere'"]


def test_python_subscriptions_are_refused_from_the_cli_and_python(make_settings: Any,
                                                                  tmp_path: Path) -> None:
    settings = make_settings()
    refused = _cli(settings, tmp_path, "subscribe", "x.*", "os:system", "--sink", "python",
                   "--token", "t")
    assert refused.returncode == 1
    (line,) = refused.stderr.strip().splitlines()
    assert line.startswith("error: --sink: python subscriptions are made from code")
    assert "@asyncevents.handler" in line and "handler_modules" in line
    assert sqlite_rows(tmp_path / "store.db", "subscriptions") == 0

    app = App(settings)
    with pytest.raises(ConfigError, match="made from code") as raised:
        app.subscribe("x.*", "os:system", sink="python", token="t")
    assert raised.value.field == "sink"
    assert app.store.list_subscriptions() == []
    app.close()


def test_rest_lists_and_disables_but_never_creates_python_subscriptions(
    make_settings: Any,
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # starlette's note about httpx2
        from fastapi.testclient import TestClient

    from asyncevents.api.app import create_app
    from asyncevents.api.services.tokens import create_token

    app = App(make_settings(handler_modules=[MODULE], **FAST))
    auth = {"Authorization": f"Bearer {create_token(app.store, 'ops', ['admin'])[1]}"}
    client = TestClient(create_app(app), raise_server_exceptions=False)

    created = client.post("/v1/subscriptions", headers=auth, json={
        "event_name": "x.*", "recipient": "os:system", "sink": "python",
        "verification_token": TOKEN})
    assert created.status_code == 422
    problem = created.json()
    assert problem["field"] == "sink" and "@asyncevents.handler" in problem["detail"]
    magento = client.post("/V1/async_event", headers=auth, json={"asyncEvent": {
        "event_name": "x.*", "recipient_url": "os:system", "verification_token": TOKEN,
        "metadata": "python"}})  # Magento's notifier field is the sink
    assert magento.status_code == 422 and "made from code" in magento.json()["detail"]
    assert app.store.list_subscriptions() == []

    sync_handler_subscriptions(app)  # what a worker does when it starts
    page = client.get("/v1/subscriptions", headers=auth, params={"sink": "python"}).json()
    assert sorted(s["recipient"] for s in page["items"]) == sorted(_python_subs(app))
    flaky = _python_subs(app)[f"{MODULE}:flaky"]
    moved = client.patch(f"/v1/subscriptions/{flaky.id}", headers=auth,
                         json={"recipient": "os:system"})
    assert moved.status_code == 422 and moved.json()["field"] == "recipient"
    off = client.patch(f"/v1/subscriptions/{flaky.id}", headers=auth, json={"active": False})
    assert off.status_code == 200 and off.json()["active"] is False

    app.publish("test.flaky.order", {"id": 1})
    drain(app)  # starts (and syncs) a worker again: the subscription stays disabled

    assert handlers_for_tests.calls("flaky") == []
    assert _python_subs(app)[f"{MODULE}:flaky"].active is False
    assert _python_subs(app)[f"{MODULE}:flaky"].recipient == f"{MODULE}:flaky"
    client.close()
    app.close()


_GONE_SOURCE = '''
from asyncevents import Event, handler

HITS = []


@handler("gone.event")
def on_gone(event: Event) -> None:
    HITS.append(event.id)
'''


@pytest.mark.parametrize("how", ["module deleted", "decorator removed"])
def test_a_handler_gone_from_the_code_ends_dead_not_lost(make_settings: Any, tmp_path: Path,
                                                         how: str) -> None:
    name = f"gone_{uuid.uuid4().hex[:8]}"  # in the working directory, as a project's module
    source = tmp_path / f"{name}.py"
    source.write_text(_GONE_SOURCE)
    settings = make_settings(handler_modules=[name], max_deaths=2, **FAST)
    first = App(settings)
    assert sync_handler_subscriptions(first).created == [f"{name}:on_gone"]
    first.close()

    if how == "module deleted":
        source.unlink()
    else:
        source.write_text(_GONE_SOURCE.replace('@handler("gone.event")\n', ""))
    sys.modules.pop(name, None)
    importlib.invalidate_caches()
    app = App(settings, handler_modules=[])
    event_id = app.publish("gone.event", {"id": 5})
    with capture_logs() as logs:
        drain(app)

    (warning,) = [e for e in logs if e["log_level"] == "warning"
                  and e.get("handler") == f"{name}:on_gone"]
    assert "handler is gone" in warning["event"]
    (delivery,) = _deliveries(app, f"{name}:on_gone")
    assert delivery.event_id == event_id
    assert (delivery.status, delivery.attempts) == ("dead", 3)  # retried, then dead
    reason = "does not import" if how == "module deleted" else "not decorated with"
    assert all(reason in (a.error or "") for a in app.store.list_attempts(delivery.id))
    assert _python_subs(app)[f"{name}:on_gone"].active  # left in place: the user's data

    # Once the handler is back, the dead delivery replays to it.
    source.write_text(_GONE_SOURCE)
    sys.modules.pop(name, None)
    importlib.invalidate_caches()
    app.replay(delivery.id)
    drain(app)
    assert app.store.get_delivery(delivery.id).status == "delivered"
    hits = sys.modules[name].HITS
    assert hits == [event_id]
    app.close()


def test_sync_updates_from_the_code_keeps_active_and_drops_twins(make_settings: Any) -> None:
    app = App(make_settings(handler_modules=[MODULE]))
    report = sync_handler_subscriptions(app)
    assert len(report.created) == 4
    subs = _python_subs(app)
    assert sync_handler_subscriptions(app).unchanged == sorted(subs)
    flaky = subs[f"{MODULE}:flaky"]
    app.update_subscription(flaky.id, active=False)
    app.store.update_subscription(flaky.id, event_name="old.pattern.*")  # older code's
    # A second worker that started at the same moment made a twin.
    app.store.create_subscription(event_name="test.permanent", sink=PYTHON_SINK,
                                  recipient=f"{MODULE}:permanent", token="")

    report = sync_handler_subscriptions(app)

    assert report.updated == [f"{MODULE}:flaky"] and report.created == []
    after = _python_subs(app)  # raises if a twin is left
    assert after[f"{MODULE}:flaky"].event_name == "test.flaky.*"
    assert after[f"{MODULE}:flaky"].active is False  # the operator's choice stays
    assert after[f"{MODULE}:permanent"].id == subs[f"{MODULE}:permanent"].id  # the oldest
    app.close()


def test_strict_catalog_checks_handler_patterns_at_worker_start(make_settings: Any) -> None:
    app = App(make_settings(handler_modules=[MODULE], strict_events=True,
                            events={"test.permanent": {"description": "known"}}))
    expected = rf"^handler {MODULE}:big_orders: unknown event 'test\.filtered'"
    with pytest.raises(ConfigError, match=expected):
        app.worker()
    assert app.store.list_subscriptions() == []  # nothing half done
    app.close()


class _HandlerPlugin:
    def __init__(self, *targets: Any) -> None:
        self.targets = targets

    @hookimpl
    def register_handlers(self, register: Any) -> None:
        for target in self.targets:
            register(target)


def test_a_plugin_registers_handlers(make_settings: Any) -> None:
    plugins = Plugins.load()
    plugins.register(_HandlerPlugin(handlers_for_tests_plugin.from_plugin), name="handlers")
    app = App(make_settings(), plugins=plugins)
    app.publish("plugin.thing.made", {"n": 1})
    drain(app)
    assert set(_python_subs(app)) == {"tests.handlers_for_tests_plugin:from_plugin"}
    assert [e.data for e in handlers_for_tests_plugin.SEEN] == [{"n": 1}]
    app.close()

    plugins = Plugins.load()
    plugins.register(_HandlerPlugin(handlers_for_tests_plugin), name="handlers")
    app = App(make_settings(), plugins=plugins)
    assert sync_handler_subscriptions(app).unchanged == [
        "tests.handlers_for_tests_plugin:from_plugin"]  # a module: all of its handlers
    app.close()

    plugins = Plugins.load()
    plugins.register(_HandlerPlugin(handlers_for_tests_plugin.not_a_handler), name="handlers")
    with pytest.raises(ConfigError, match=r"not decorated with @asyncevents\.handler"):
        App(make_settings(), plugins=plugins).worker()


def test_handler_declarations_and_the_sink_refuse_what_they_cannot_call() -> None:
    def nested(event: Event) -> None: ...

    with pytest.raises(ConfigError, match="defined at module level"):
        handler("x.*")(nested)
    with pytest.raises(ConfigError, match="two @handler decorators"):
        handler("x.*")(handlers_for_tests.flaky)
    with pytest.raises(ConfigError, match="an event name or pattern"):
        handler("")

    sink = PythonSink(Settings())
    sink.validate_recipient(f"{MODULE}:flaky")
    for bad in ("", "os.system", "os:system()", "a b:c"):
        with pytest.raises(InvalidRecipient):
            sink.validate_recipient(bad)
    request = DeliveryRequest(
        delivery_id="d", event_id="e", event_name="x", subscription_id="s",
        recipient="os:system", token="", payload={"cmd": "true"},
        published_at=datetime.now(UTC))
    for recipient in ("os:system", f"{MODULE}:calls"):  # importable, but no @handler
        result = sink.deliver(DeliveryRequest(**{**request.__dict__, "recipient": recipient}))
        assert not result.success and result.retryable
        assert "not decorated with @asyncevents.handler" in (result.error or "")


def _readme_block() -> str:
    section = README.read_text(encoding="utf-8").split("\n## Python handlers\n", 1)[1]
    found = re.search(r"^```sh\n(.*?)^```$", section, re.MULTILINE | re.DOTALL)
    assert found, "no sh block under '## Python handlers'"
    return found.group(1)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_readme_example_runs_as_written(tmp_path: Path) -> None:
    script = tmp_path / "handlers.sh"
    script.write_text(_readme_block(), encoding="utf-8")
    work = tmp_path / "fresh"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCEVENTS_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    done = subprocess.run(["bash", "-e", "-o", "pipefail", str(script)], cwd=work, env=env,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert "Traceback" not in done.stderr and "error:" not in done.stderr, done.stderr
    handled = [line for line in done.stdout.splitlines() if line.startswith("handler: ")]
    assert handled == ["handler: sales.order.created {'id': 7} (attempt 1)"]
    assert "myshop.handlers:on_order" in done.stdout
    store = App(database_url=f"sqlite:///{work / 'asyncevents.db'}").store
    dead = [d for d in store.recent_deliveries(10) if d.status == "dead"]
    assert [d.payload for d in dead] == [{"id": 8, "cancelled": True}]
    (attempt,) = store.list_attempts(dead[0].id)
    assert attempt.error == "PermanentSinkError: cancelled orders are not shipped"
    store.close()
