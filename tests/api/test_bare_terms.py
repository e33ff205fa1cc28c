"""Queries as Magento users write them (issue 17): a bare term searches the event name.

The same query text through every door that takes one: the REST ``q`` parameter
(search, export, replay by query), the console's search box and the CLI's
``search``; in a subscription filter a bare term tests the dispatched event's name.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from sqlalchemy import update

from asyncevents.cli import main
from asyncevents.core.delivery.dispatch import Dispatcher
from asyncevents.core.store.schema import deliveries
from tests.api.conftest import TOKEN, Api
from tests.api.helpers import login

# event name -> payloads
EVENTS: dict[str, list[dict[str, Any]]] = {
    "customer.created": [{"id": 1, "items": [{"sku": "ABC"}, {"sku": "XYZ"}]}],
    "customer.updated": [{"id": 2, "items": [{"sku": "XYZ"}, {"sku": "ABC"}]}],
    "sales.order.created": [{"id": 3, "items": [{"sku": "ABC"}]}],
    "sales.order.failed": [{"id": 4}],
}


def seed(api: Api) -> dict[str, set[str]]:
    """One delivery per payload; ``customer.updated``'s is dead. Returns ids by event name."""
    ids: dict[str, set[str]] = {}
    for name, payloads in EVENTS.items():
        sub = api.subscription(name)
        for data in payloads:
            delivery = api.delivery(sub, data)
            ids.setdefault(name, set()).add(delivery.id)
            if name == "customer.updated":
                with api.app.store.begin() as conn:
                    conn.execute(update(deliveries).where(deliveries.c.id == delivery.id)
                                 .values(status="dead"))
    return ids


def found(api: Api, q: str) -> set[str]:
    response = api.client.get("/v1/deliveries", params={"q": q, "limit": 100},
                              headers=api.auth("deliveries:read"))
    assert response.status_code == 200, response.text
    return {item["uuid"] for item in response.json()["items"]}


def test_bare_terms_in_the_rest_q_parameter(api: Api) -> None:
    ids = seed(api)
    created = ids["customer.created"] | ids["sales.order.created"]
    assert found(api, "*.created") == created
    assert found(api, "customer.*") == ids["customer.created"] | ids["customer.updated"]
    # Magento's own example: not delivered means pending, retrying or dead
    assert found(api, "customer.* AND success: false") == \
        ids["customer.created"] | ids["customer.updated"]
    assert found(api, "customer.* AND status:dead") == ids["customer.updated"]
    assert found(api, '"sales.order.failed"') == ids["sales.order.failed"]
    assert found(api, "sales.order.* -*.failed") == ids["sales.order.created"]
    assert found(api, "CUSTOMER.*") == set()  # case-sensitive, like event_name:...


def test_positions_in_the_rest_q_parameter(api: Api) -> None:
    ids = seed(api)
    assert found(api, "data.items.0.sku:ABC") == \
        ids["customer.created"] | ids["sales.order.created"]
    assert found(api, "data.items.1.sku:ABC") == ids["customer.updated"]
    assert found(api, "data.items.sku:ABC") == \
        ids["customer.created"] | ids["customer.updated"] | ids["sales.order.created"]


def test_export_and_replay_by_query_take_bare_terms(api: Api) -> None:
    ids = seed(api)
    h = api.auth("deliveries:read")
    text = api.client.get("/v1/deliveries/export", params={"format": "csv", "q": "*.created"},
                          headers=h).text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert {r["uuid"] for r in rows} == ids["customer.created"] | ids["sales.order.created"]
    lines = api.client.get("/v1/deliveries/export",
                           params={"format": "jsonl", "q": "customer.* AND data.items.1.sku:ABC"},
                           headers=h).text.splitlines()
    assert [json.loads(line)["uuid"] for line in lines] == list(ids["customer.updated"])
    dry = api.client.post("/v1/deliveries/replay",
                          json={"q": "customer.* AND success:false", "dry_run": True},
                          headers=api.auth("deliveries:replay"))
    assert dry.status_code == 202, dry.text
    assert dry.json()["matched"] == 2


def test_the_console_search_box_takes_bare_terms(api: Api) -> None:
    ids = seed(api)
    login(api)
    page = api.client.get("/console/deliveries", params={"q": "*.created"})
    assert page.status_code == 200
    for delivery_id in ids["customer.created"] | ids["sales.order.created"]:
        assert delivery_id in page.text
    for delivery_id in ids["customer.updated"] | ids["sales.order.failed"]:
        assert delivery_id not in page.text


def test_cli_search_takes_bare_terms(api: Api, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    ids = seed(api)
    monkeypatch.setenv("ASYNCEVENTS_DATABASE_URL", api.app.settings.database_url)
    assert main(["search", "*.created", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {row["uuid"] for row in out} == ids["customer.created"] | ids["sales.order.created"]
    assert main(["search", "customer.* AND success: false", "--csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert {r["uuid"] for r in rows} == ids["customer.created"] | ids["customer.updated"]


def test_a_filter_takes_a_bare_term_for_the_event_name(api: Api) -> None:
    response = api.client.post("/v1/subscriptions", headers=api.auth("admin"), json={
        "event_name": "customer.*", "recipient": "http://127.0.0.1:9/hook",
        "verification_token": TOKEN, "filter": "*.created OR total:>=100"})
    assert response.status_code == 201, response.text
    app = api.app
    targets = Dispatcher(app.catalog, app.store, app.transport, app.retries, app.policy,
                         app.filter_fn()).targets
    assert len(targets("customer.created", {"total": 1})) == 1
    assert len(targets("customer.updated", {"total": 150})) == 1
    assert targets("customer.updated", {"total": 1}) == []
