"""``/v1/deliveries``: search with cursors, trace, replay, replay by query, export."""

from __future__ import annotations

import csv
import io
import json

from tests.api.conftest import Api
from tests.api.helpers import queued


def deliver_queue(api: Api) -> int:
    return queued(api)[f"{api.app.settings.queue_prefix}.deliver"]


def seed(api: Api, count: int) -> list[str]:
    sub = api.subscription()
    return [api.delivery(sub, {"n": i, "customer": {"email": f"c{i}@example.com"}}).id
            for i in range(count)]


def test_search_pages_with_a_cursor(api: Api) -> None:
    ids = seed(api, 7)
    h = api.auth("deliveries:read")
    seen: list[str] = []
    cursor = None
    while True:
        params = {"q": "event_name:shop.*", "limit": 3, **({"cursor": cursor} if cursor else {})}
        page = api.client.get("/v1/deliveries", params=params, headers=h).json()
        seen += [d["uuid"] for d in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == ids[::-1]  # newest first, each once
    one = api.client.get("/v1/deliveries", params={"q": "data.customer.email:c3@example.com"},
                         headers=h).json()["items"]
    assert [d["uuid"] for d in one] == [ids[3]]
    assert one[0]["data"] == {"n": 3, "customer": {"email": "c3@example.com"}}


def test_search_errors_name_the_parameter(api: Api) -> None:
    h = api.auth("deliveries:read")
    bad = api.client.get("/v1/deliveries", params={"q": "status:(dead"}, headers=h)
    assert bad.status_code == 422 and bad.json()["field"] == "q"
    bad = api.client.get("/v1/deliveries", params={"q": "nosuchfield:1"}, headers=h)
    assert bad.status_code == 422 and bad.json()["field"] == "q"
    bad = api.client.get("/v1/deliveries", params={"cursor": "!!"}, headers=h)
    assert bad.status_code == 422 and bad.json()["field"] == "cursor"
    bad = api.client.get("/v1/deliveries", params={"limit": 5000}, headers=h)
    assert bad.status_code == 422 and bad.json()["field"] == "limit"


def test_trace_matches_the_cli_document(api: Api) -> None:
    from asyncevents.core.search.results import trace_document

    (delivery_id,) = seed(api, 1)
    body = api.client.get(f"/v1/deliveries/{delivery_id}",
                          headers=api.auth("deliveries:read")).json()
    assert body == json.loads(json.dumps(trace_document(api.app.store, delivery_id)))
    assert body["attempts"] == [] and body["status"] == "pending"
    missing = api.client.get("/v1/deliveries/nope", headers=api.auth("deliveries:read"))
    assert missing.status_code == 404 and "nope" in missing.json()["detail"]


def test_replay_one(api: Api) -> None:
    (delivery_id,) = seed(api, 1)
    api.app.store.set_delivery_status(delivery_id, "dead")
    h = api.auth("deliveries:replay")
    response = api.client.post(f"/v1/deliveries/{delivery_id}/replay", headers=h)
    assert response.status_code == 202 and response.json() == {"matched": 1, "replayed": 1}
    assert api.app.store.get_delivery(delivery_id).status == "pending"
    assert deliver_queue(api) == 1
    assert api.client.post("/v1/deliveries/nope/replay", headers=h).status_code == 404


def test_replay_by_query_with_dry_run_and_max(api: Api) -> None:
    ids = seed(api, 5)
    for delivery_id in ids[:3]:
        api.app.store.set_delivery_status(delivery_id, "dead")
    h = api.auth("deliveries:replay")
    dry = api.client.post("/v1/deliveries/replay", json={"q": "status:dead", "dry_run": True},
                          headers=h)
    assert dry.json() == {"matched": 3, "replayed": 0} and deliver_queue(api) == 0
    too_many = api.client.post("/v1/deliveries/replay", json={"q": "status:dead", "max": 2},
                               headers=h)
    assert too_many.status_code == 409 and too_many.json()["field"] == "max"
    assert deliver_queue(api) == 0
    done = api.client.post("/v1/deliveries/replay", json={"q": "status:dead"}, headers=h)
    assert done.status_code == 202 and done.json() == {"matched": 3, "replayed": 3}
    assert deliver_queue(api) == 3
    assert {api.app.store.get_delivery(i).status for i in ids} == {"pending"}
    bad = api.client.post("/v1/deliveries/replay", json={"q": "status:("}, headers=h)
    assert bad.status_code == 422 and bad.json()["field"] == "q"


def test_export_csv_and_jsonl_stream_every_match(api: Api) -> None:
    ids = seed(api, 1205)  # more than one batch of the streaming iterator
    h = api.auth("deliveries:read")
    with api.client.stream("GET", "/v1/deliveries/export", params={"format": "csv"},
                           headers=h) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/csv")
        assert "attachment" in response.headers["content-disposition"]
        assert "content-length" not in response.headers  # streamed, not buffered
        text = "".join(response.iter_text())
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 1205 and {r["uuid"] for r in rows} == set(ids)
    assert list(rows[0]) == ["uuid", "event_name", "subscription_id", "status", "success",
                             "attempts", "created", "data"]
    assert json.loads(rows[-1]["data"]) == {"n": 0, "customer": {"email": "c0@example.com"}}

    lines = api.client.get("/v1/deliveries/export",
                           params={"format": "jsonl", "q": "data.n:[0 TO 9]"},
                           headers=h).text.splitlines()
    assert len(lines) == 10 and all(json.loads(line)["uuid"] in ids for line in lines)
    bad = api.client.get("/v1/deliveries/export", params={"format": "xml"}, headers=h)
    assert bad.status_code == 422 and bad.json()["field"] == "format"
