"""The Magento compatibility routes: ``/V1/async_event`` and ``/V1/async_events``."""

from __future__ import annotations

import pytest

from tests.api.conftest import Api

# Long and varied: a weak token would add a ``warnings`` entry to Magento's shape.
TOKEN = "supersecret-magento-verification-token"


def body(**fields: object) -> dict[str, object]:
    event = {"event_name": "sales.order.created", "recipient_url": "http://127.0.0.1:9/m",
             "verification_token": TOKEN, "metadata": "http", **fields}
    return {"asyncEvent": event}


def test_save_get_list_as_magento_does(api: Api) -> None:
    h = api.auth()
    saved = api.client.post("/V1/async_event", json=body(store_id=1), headers=h)
    assert saved.status_code == 200, saved.text
    event = saved.json()
    assert set(event) == {"subscription_id", "event_name", "recipient_url", "status",
                          "metadata", "subscribed_at", "store_id"}
    assert event["status"] is True and event["metadata"] == "http"
    assert event["recipient_url"] == "http://127.0.0.1:9/m"
    sub = api.app.store.get_subscription(event["subscription_id"])
    assert (sub.sink, sub.token, sub.event_name) == ("http", TOKEN, "sales.order.created")

    got = api.client.get(f"/V1/async_event/{event['subscription_id']}", headers=h).json()
    assert got == event
    listed = api.client.get("/V1/async_events", params={"searchCriteria[pageSize]": 10},
                            headers=h).json()
    assert listed["total_count"] == 1 and listed["items"] == [event]
    assert "verification_token" not in saved.text + str(got) + str(listed)


def test_put_changes_status_and_recipient(api: Api) -> None:
    h = api.auth()
    event = api.client.post("/V1/async_event", json=body(), headers=h).json()
    updated = api.client.put(f"/V1/async_event/{event['subscription_id']}", json={
        "asyncEvent": {"status": False, "recipient_url": "http://127.0.0.1:9/n",
                       "verification_token": "new-one"}}, headers=h)
    assert updated.status_code == 200, updated.text
    assert updated.json()["status"] is False
    sub = api.app.store.get_subscription(event["subscription_id"])
    assert (sub.active, sub.recipient, sub.token) == (False, "http://127.0.0.1:9/n", "new-one")


def test_metadata_is_the_sink_name(api: Api) -> None:
    response = api.client.post("/V1/async_event", json=body(metadata="carrier-pigeon"),
                               headers=api.auth())
    assert response.status_code == 422
    assert response.json()["field"] == "asyncEvent.metadata"


def test_errors_use_magento_field_names(api: Api) -> None:
    h = api.auth()
    refused = api.client.post("/V1/async_event", json=body(recipient_url="http://10.0.0.1/"),
                              headers=h)
    assert refused.status_code == 422
    assert refused.json()["field"] == "asyncEvent.recipient_url"
    missing = api.client.post("/V1/async_event", json={"asyncEvent": {"event_name": "x"}},
                              headers=h)
    assert missing.status_code == 422
    assert missing.json()["field"] == "asyncEvent.recipient_url"
    assert api.client.get("/V1/async_event/nope", headers=h).status_code == 404


# Magento clients call its REST base path; every store code answers the same store.
PREFIXES = ["", "/rest", "/rest/default", "/rest/all", "/rest/fr_store2"]


@pytest.mark.parametrize("prefix", PREFIXES)
def test_magento_rest_base_paths(api: Api, prefix: str) -> None:
    h = api.auth()
    saved = api.client.post(f"{prefix}/V1/async_event", json=body(), headers=h)
    assert saved.status_code == 200, saved.text
    event = saved.json()
    sub_id = event["subscription_id"]
    assert api.client.get(f"{prefix}/V1/async_event/{sub_id}", headers=h).json() == event
    listed = api.client.get(f"{prefix}/V1/async_events", headers=h).json()
    assert [item["subscription_id"] for item in listed["items"]] == [sub_id]
    put = api.client.put(f"{prefix}/V1/async_event/{sub_id}",
                         json={"asyncEvent": {"status": False}}, headers=h)
    assert put.status_code == 200 and put.json()["status"] is False
    # The same refusals, in Magento's words, and the same auth.
    refused = api.client.post(f"{prefix}/V1/async_event",
                              json=body(recipient_url="http://10.0.0.1/"), headers=h)
    assert refused.status_code == 422
    assert refused.json()["field"] == "asyncEvent.recipient_url"
    assert api.client.post(f"{prefix}/V1/async_event", json=body()).status_code == 401
    read_only = {"Authorization": f"Bearer {api.tokens['subscriptions:read']}"}
    assert api.client.post(f"{prefix}/V1/async_event", json=body(),
                           headers=read_only).status_code == 403


@pytest.mark.parametrize("code", ["9lives", "a-b", "x" * 33, "d%C3%A9faut"])
def test_a_store_code_magento_would_refuse_is_named(api: Api, code: str) -> None:
    response = api.client.get(f"/rest/{code}/V1/async_events", headers=api.auth())
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "store_code"
    # Anonymous callers learn nothing about the path either.
    assert api.client.get(f"/rest/{code}/V1/async_events").status_code == 401


def test_aliases_are_listed_once_in_the_openapi_document(api: Api) -> None:
    paths = api.client.get("/openapi.json").json()["paths"]
    assert "/V1/async_event" in paths
    assert not any(path.startswith("/rest/") for path in paths)
