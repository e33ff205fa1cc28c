"""``/v1/events``: the catalog and publishing, with Idempotency-Key."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import update

from asyncevents.core.clock import utcnow
from asyncevents.core.store.schema import idempotency_keys
from tests.api.conftest import Api
from tests.api.helpers import queued


def trigger_count(api: Api) -> int:
    return queued(api)[f"{api.app.settings.queue_prefix}.trigger"]


def test_catalog(make_api: Callable[..., Api]) -> None:
    api = make_api(strict_events=True, events={
        "sales.order.created": {"description": "An order was placed"},
        "customer.*": {"description": "Customer lifecycle"}})
    body = api.client.get("/v1/events", headers=api.auth("subscriptions:read")).json()
    assert body["strict"] is True
    # asyncevents' own operational events are always in the catalog (issue 15).
    own = [e["name"] for e in body["events"] if e["name"].startswith("asyncevents.")]
    assert len(own) == 4 and "asyncevents.delivery.dead" in own
    assert [e for e in body["events"] if not e["name"].startswith("asyncevents.")] == [
        {"name": "customer.*", "description": "Customer lifecycle", "resolver": None,
         "pattern": True, "deprecated": False, "schema": None},
        {"name": "sales.order.created", "description": "An order was placed",
         "resolver": None, "pattern": False, "deprecated": False, "schema": None},
    ]


def test_publish_queues_a_trigger(api: Api) -> None:
    response = api.client.post("/v1/events", json={"name": "sales.order.created",
                                                   "data": {"id": 42}},
                               headers=api.auth("events:publish"))
    assert response.status_code == 202
    assert response.json()["duplicate"] is False
    assert len(response.json()["event_id"]) == 36
    assert trigger_count(api) == 1


def test_idempotency_key_publishes_once(api: Api) -> None:
    h = {**api.auth("events:publish"), "Idempotency-Key": "order-42-created"}
    event = {"name": "sales.order.created", "data": {"id": 42}}
    first = api.client.post("/v1/events", json=event, headers=h)
    second = api.client.post("/v1/events", json=event, headers=h)
    assert (first.status_code, second.status_code) == (202, 200)
    assert second.json() == {"event_id": first.json()["event_id"], "duplicate": True}
    assert trigger_count(api) == 1
    other = api.client.post("/v1/events", json=event,
                            headers={**h, "Idempotency-Key": "order-43-created"})
    assert other.status_code == 202 and other.json()["event_id"] != first.json()["event_id"]
    assert trigger_count(api) == 2


def test_idempotency_key_expires_after_a_day(api: Api) -> None:
    h = {**api.auth("events:publish"), "Idempotency-Key": "k"}
    event = {"name": "a.b", "data": {}}
    first = api.client.post("/v1/events", json=event, headers=h).json()["event_id"]
    with api.app.store.begin() as conn:
        conn.execute(update(idempotency_keys).values(
            created_at=utcnow() - timedelta(hours=24, seconds=1)))
    again = api.client.post("/v1/events", json=event, headers=h)
    assert again.status_code == 202 and again.json()["event_id"] != first


def test_concurrent_requests_with_one_key_publish_once(api: Api) -> None:
    h = {**api.auth("events:publish"), "Idempotency-Key": "race"}
    answers: list[tuple[int, str | None]] = []
    barrier = threading.Barrier(6)

    def post() -> None:
        barrier.wait()
        r = api.client.post("/v1/events", json={"name": "a.b", "data": {}}, headers=h)
        answers.append((r.status_code, r.json().get("event_id")))

    threads = [threading.Thread(target=post) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert trigger_count(api) == 1
    ids = {event_id for status, event_id in answers if status in (200, 202)}
    assert len(ids) == 1
    assert {status for status, _ in answers} <= {200, 202, 409}


def test_a_failed_publish_releases_the_key(make_api: Callable[..., Api]) -> None:
    api = make_api(strict_events=True, events={"a.b": {}})
    h = {**api.auth("events:publish"), "Idempotency-Key": "retry-me"}
    refused = api.client.post("/v1/events", json={"name": "nope", "data": {}}, headers=h)
    assert refused.status_code == 422 and refused.json()["field"] == "name"
    ok = api.client.post("/v1/events", json={"name": "a.b", "data": {}}, headers=h)
    assert ok.status_code == 202 and ok.json()["duplicate"] is False


def test_invalid_publishes_name_the_field(make_api: Callable[..., Api]) -> None:
    api = make_api(max_payload_bytes=50)
    h = api.auth("events:publish")
    too_big = api.client.post("/v1/events", json={"name": "a.b", "data": {"x": "y" * 100}},
                              headers=h)
    assert too_big.status_code == 422 and too_big.json()["field"] == "data"
    not_object = api.client.post("/v1/events", json={"name": "a.b", "data": [1]}, headers=h)
    assert not_object.status_code == 422 and not_object.json()["field"] == "data"
    pattern = api.client.post("/v1/events", json={"name": "a.*", "data": {}}, headers=h)
    assert pattern.status_code == 422 and pattern.json()["field"] == "name"
    long_key = api.client.post("/v1/events", json={"name": "a.b"},
                               headers={**h, "Idempotency-Key": "k" * 300})
    assert long_key.status_code == 422 and long_key.json()["field"] == "idempotency-key"
    assert trigger_count(api) == 0


def test_a_key_reused_with_another_body_is_refused_naming_it(api: Api) -> None:
    h = {**api.auth("events:publish"), "Idempotency-Key": "order-42-created"}
    first = api.client.post("/v1/events", json={"name": "a.b", "data": {"id": 42}}, headers=h)
    assert first.status_code == 202
    # The same request spelled differently is the same request.
    again = api.client.post("/v1/events", content=b'{"data":{"id":42},  "name":"a.b"}',
                            headers={**h, "content-type": "application/json"})
    assert again.status_code == 200 and again.json()["duplicate"] is True
    for other in ({"name": "a.b", "data": {"id": 43}}, {"name": "a.c", "data": {"id": 42}},
                  {"name": "a.b", "data": {"id": 42}, "delay": 5}):
        refused = api.client.post("/v1/events", json=other, headers=h)
        assert refused.status_code == 422, refused.text
        problem = refused.json()
        assert problem["field"] == "idempotency-key"
        assert "'order-42-created'" in problem["detail"] and "different" in problem["detail"]
    assert trigger_count(api) == 1


def test_keys_are_scoped_per_api_token(api: Api) -> None:
    event = {"name": "a.b", "data": {"id": 1}}
    one = {"Authorization": f"Bearer {api.token('events:publish')}", "Idempotency-Key": "k1"}
    two = {"Authorization": f"Bearer {api.token('events:publish')}", "Idempotency-Key": "k1"}
    first = api.client.post("/v1/events", json=event, headers=one)
    second = api.client.post("/v1/events", json={**event, "data": {"id": 2}}, headers=two)
    assert (first.status_code, second.status_code) == (202, 202), second.text
    assert first.json()["event_id"] != second.json()["event_id"]
    assert api.client.post("/v1/events", json=event, headers=one).json() == {
        "event_id": first.json()["event_id"], "duplicate": True}
    assert trigger_count(api) == 2
