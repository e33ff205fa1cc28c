"""``/healthz``, ``/metrics``, ``/v1/sinks`` and ``/v1/tokens``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from pytest_httpserver import HTTPServer

from asyncevents.api.services.tokens import authenticate
from tests.api.conftest import Api
from tests.helpers import Recorder, delete_amqp_queues, drain


def samples(api: Api) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = api.client.get("/metrics", headers=api.auth("deliveries:read"))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text)
            for s in family.samples}


def test_healthz(api: Api) -> None:
    response = api.client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "transport": "ok"}}


def test_metrics_after_deliveries(api: Api, httpserver: HTTPServer) -> None:
    recorder = Recorder(httpserver)
    api.app.subscribe("a.*", recorder.route("/ok"), token="t")
    api.app.subscribe("a.*", recorder.route("/gone", [410] * 3), token="t")
    for i in range(3):
        api.app.publish("a.b", {"i": i})
    before = samples(api)
    trigger = f"{api.app.settings.queue_prefix}.trigger"
    assert before[("asyncevents_queue_messages", (("queue", trigger),))] == 3
    drain(api.app, idle=1.0)
    after = samples(api)
    assert after[("asyncevents_deliveries", (("sink", "http"), ("status", "delivered")))] == 3
    assert after[("asyncevents_deliveries", (("sink", "http"), ("status", "dead")))] == 3
    assert after[("asyncevents_attempt_duration_seconds_count", (("sink", "http"),))] == 6
    inf = ("asyncevents_attempt_duration_seconds_bucket", (("le", "+Inf"), ("sink", "http")))
    assert after[inf] == 6
    assert after[("asyncevents_attempt_duration_seconds_sum", (("sink", "http"),))] > 0
    assert after[("asyncevents_queue_messages", (("queue", trigger),))] == 0
    assert after[("asyncevents_scheduled_retries", ())] == 0


def test_metrics_read_rabbitmq_queue_depths(make_api: Callable[..., Api], amqp_url: str) -> None:
    api = make_api(transport_url=amqp_url)
    try:
        for i in range(2):
            api.app.publish("a.b", {"i": i})
        found = samples(api)
        trigger = f"{api.app.settings.queue_prefix}.trigger"
        assert found[("asyncevents_queue_messages", (("queue", trigger),))] == 2
    finally:
        delete_amqp_queues(api.app.settings)


def test_metrics_leave_out_a_broken_source(make_api: Callable[..., Api]) -> None:
    api = make_api(transport_url="amqp://guest:guest@127.0.0.1:1//")
    found = samples(api)
    assert ("asyncevents_scheduled_retries", ()) in found
    assert not any(name == "asyncevents_queue_messages" for name, _ in found)


def test_sinks(api: Api) -> None:
    body = api.client.get("/v1/sinks", headers=api.auth("subscriptions:read")).json()
    names = {s["name"]: s for s in body["sinks"]}
    assert {"http", "eventbridge"} <= set(names)
    assert names["http"]["distribution"] == "asyncevents"


def test_tokens_admin(api: Api) -> None:
    h = api.auth("admin")
    created = api.client.post("/v1/tokens", json={"name": "ci", "scopes": ["deliveries:read"]},
                              headers=h)
    assert created.status_code == 201
    secret = created.json()["token"]
    assert secret.startswith("ae_") and created.json()["prefix"] == secret[:10]
    assert authenticate(api.app.store, secret) is not None
    listed = api.client.get("/v1/tokens", headers=h)
    assert secret not in listed.text and "token_hash" not in listed.text
    assert "ci" in {t["name"] for t in listed.json()}
    token_id = created.json()["id"]
    assert api.client.delete(f"/v1/tokens/{token_id}", headers=h).status_code == 204
    assert api.client.get("/v1/deliveries",
                          headers={"Authorization": f"Bearer {secret}"}).status_code == 401
    assert api.client.delete(f"/v1/tokens/{token_id}", headers=h).status_code == 404
    bad = api.client.post("/v1/tokens", json={"name": "x", "scopes": ["root"]}, headers=h)
    assert bad.status_code == 422 and bad.json()["field"].startswith("scopes")


def test_docs_and_openapi(api: Api) -> None:
    assert "swagger" in api.client.get("/docs").text.lower()
    schema: dict[str, Any] = api.client.get("/openapi.json").json()
    assert schema["info"]["title"] == "asyncevents"
    assert "/v1/subscriptions" in schema["paths"] and "/V1/async_event" in schema["paths"]
    assert not any(path.startswith("/console") for path in schema["paths"])
