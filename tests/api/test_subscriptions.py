"""``/v1/subscriptions``: create, list, get, update, delete; the token is never returned."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select

from asyncevents.core.store.schema import subscriptions
from tests.api.conftest import TOKEN, Api
from tests.api.helpers import csrf, login

NEW = {"event_name": "shop.order.created", "recipient": "http://127.0.0.1:9/new",
       "verification_token": TOKEN}


def test_create_get_list_update_delete(api: Api) -> None:
    h = api.auth("admin")
    created = api.client.post("/v1/subscriptions", json={
        **NEW, "filter": "data.total:[100 TO *]", "retry_policy": {"max_deaths": 2},
        "metadata": {"team": "shop"}}, headers=h)
    assert created.status_code == 201, created.text
    sub = created.json()
    assert sub.pop("warnings") == []  # only on create and update: nothing to say here
    assert sub["event_name"] == "shop.order.created" and sub["active"] is True
    assert sub["filter"] == "data.total:[100 TO *]" and sub["retry_policy"] == {"max_deaths": 2}
    assert api.client.get(f"/v1/subscriptions/{sub['id']}", headers=h).json() == sub

    changed = api.client.patch(f"/v1/subscriptions/{sub['id']}", json={
        "active": False, "recipient": "http://127.0.0.1:9/moved", "filter": None,
        "retry_policy": None, "metadata": {"team": "ops"}}, headers=h)
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert (body["active"], body["recipient"], body["filter"], body["retry_policy"],
            body["metadata"]) == (False, "http://127.0.0.1:9/moved", None, None, {"team": "ops"})

    assert api.client.delete(f"/v1/subscriptions/{sub['id']}", headers=h).status_code == 204
    assert api.client.get(f"/v1/subscriptions/{sub['id']}", headers=h).status_code == 404
    assert api.client.delete(f"/v1/subscriptions/{sub['id']}", headers=h).status_code == 404
    assert api.client.get("/v1/subscriptions", headers=h).json()["items"] == []


def test_patch_leaves_out_fields_alone(api: Api) -> None:
    sub = api.subscription(filter="data.x:1", metadata={"k": "v"})
    body = api.client.patch(f"/v1/subscriptions/{sub.id}", json={"active": False},
                            headers=api.auth()).json()
    assert body["filter"] == "data.x:1" and body["metadata"] == {"k": "v"}
    assert body["recipient"] == sub.recipient


def test_the_verification_token_is_never_returned(api: Api) -> None:
    h = api.auth()
    secret = "whsec_" + "c2VjcmV0LXRoYXQtbXVzdC1uZXZlci1sZWFr"
    sub = api.client.post("/v1/subscriptions", json={**NEW, "verification_token": secret},
                          headers=h).json()
    rotated = "rotated-secret-never-shown"
    answers = [
        api.client.get(f"/v1/subscriptions/{sub['id']}", headers=h),
        api.client.get("/v1/subscriptions", headers=h),
        api.client.patch(f"/v1/subscriptions/{sub['id']}", json={"verification_token": rotated},
                         headers=h),
        api.client.get(f"/V1/async_event/{sub['id']}", headers=h),
        api.client.get("/V1/async_events", headers=h),
    ]
    for answer in answers:
        assert answer.status_code == 200
        assert "whsec_" not in answer.text and rotated not in answer.text
        assert "token" not in json.dumps(answer.json()).replace("next_cursor", "")
    # Rotation took effect: the store signs with the new token.
    assert api.app.store.get_subscription(sub["id"]).token == rotated


def test_tokens_are_encrypted_at_rest_with_a_secret_key(make_api: Callable[..., Api]) -> None:
    api = make_api(secret_key="k" * 32)
    sub = api.client.post("/v1/subscriptions", json={**NEW, "verification_token": "plain-one"},
                          headers=api.auth()).json()
    with api.app.store.begin() as conn:
        stored = conn.execute(select(subscriptions.c.token)
                              .where(subscriptions.c.id == sub["id"])).scalar_one()
    assert "plain-one" not in stored
    assert api.app.store.get_subscription(sub["id"]).token == "plain-one"


@pytest.mark.parametrize(("body", "field"), [
    ({**NEW, "recipient": "ftp://127.0.0.1/x"}, "recipient"),
    ({**NEW, "sink": "nope"}, "sink"),
    ({**NEW, "verification_token": "whsec_***"}, "verification_token"),
    ({**NEW, "filter": "data.x:(unclosed"}, "filter"),
    ({**NEW, "retry_policy": {"max_deaths": -1}}, "retry_policy"),
    ({**NEW, "retry_policy": {"bogus": 1}}, "retry_policy"),
    ({**NEW, "event_name": ""}, "event_name"),
    ({**NEW, "extra": 1}, "extra"),  # unknown fields are refused, not ignored
    ({k: v for k, v in NEW.items() if k != "verification_token"}, "verification_token"),
    ({**NEW, "recipient": "http://127.0.0.1/\x00"}, "recipient"),
])
def test_invalid_fields_are_named(api: Api, body: dict[str, Any], field: str) -> None:
    response = api.client.post("/v1/subscriptions", json=body, headers=api.auth())
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert api.app.store.list_subscriptions() == []


def test_unknown_event_in_strict_mode_names_the_field(make_api: Callable[..., Api]) -> None:
    api = make_api(strict_events=True, events={"shop.order.created": {}})
    response = api.client.post("/v1/subscriptions", json={**NEW, "event_name": "crm.x"},
                               headers=api.auth())
    assert response.status_code == 422
    assert response.json()["field"] == "event_name"
    assert "shop.order.created" in response.json()["detail"]  # the known events are listed


@pytest.mark.parametrize(("body", "field"), [
    ({"recipient": "http://169.254.169.254/"}, "recipient"),
    ({"verification_token": ""}, "verification_token"),
    ({"filter": "a:("}, "filter"),
    ({"retry_policy": {"backoff": "random"}}, "retry_policy"),
    ({"active": None}, "active"),
    ({"event_name": "x"}, "event_name"),  # not changeable
])
def test_invalid_updates_are_named_and_change_nothing(api: Api, body: dict[str, Any],
                                                      field: str) -> None:
    sub = api.subscription()
    response = api.client.patch(f"/v1/subscriptions/{sub.id}", json=body, headers=api.auth())
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert api.app.store.get_subscription(sub.id) == sub


def test_list_is_paginated_and_filterable(api: Api) -> None:
    subs = [api.subscription(f"shop.e{i % 3}", f"http://127.0.0.1:9/r{i}") for i in range(7)]
    api.app.store.update_subscription(subs[1].id, active=False)
    h = api.auth("subscriptions:read")
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = api.client.get("/v1/subscriptions", params=params, headers=h).json()
        seen += [s["id"] for s in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [s.id for s in subs]  # oldest first, each once

    def ids(**params: Any) -> list[str]:
        return [s["id"] for s in api.client.get("/v1/subscriptions", params=params,
                                                headers=h).json()["items"]]

    assert ids(event_name="shop.e0") == [subs[0].id, subs[3].id, subs[6].id]
    assert ids(active=False) == [subs[1].id]
    assert ids(recipient="/r5") == [subs[5].id]
    assert ids(recipient="%") == []  # LIKE wildcards are literal
    assert ids(sink="eventbridge") == []
    bad = api.client.get("/v1/subscriptions", params={"cursor": "garbage"}, headers=h)
    assert bad.status_code == 422 and bad.json()["field"] == "cursor"
    bad = api.client.get("/v1/subscriptions", params={"limit": 0}, headers=h)
    assert bad.status_code == 422 and bad.json()["field"] == "limit"


def test_delete_is_soft_deliveries_stay_searchable(api: Api) -> None:
    sub = api.subscription()
    delivery = api.delivery(sub)
    h = api.auth()
    assert api.client.delete(f"/v1/subscriptions/{sub.id}", headers=h).status_code == 204
    found = api.client.get("/v1/deliveries", params={"q": f"subscription_id:{sub.id}"},
                           headers=h).json()["items"]
    assert [d["uuid"] for d in found] == [delivery.id]
    assert api.client.get(f"/v1/deliveries/{delivery.id}", headers=h).status_code == 200
    assert api.app.store.get_subscription(sub.id, deleted=True).active is False


def test_a_blank_token_is_refused_naming_the_field(api: Api) -> None:
    h = api.auth()
    rest = api.client.post("/v1/subscriptions", json={**NEW, "verification_token": " \t "},
                           headers=h)
    assert rest.status_code == 422 and rest.json()["field"] == "verification_token"
    assert "whitespace" in rest.json()["detail"]
    magento = api.client.post("/rest/V1/async_event", json={"asyncEvent": {
        "event_name": "a.b", "recipient_url": "http://127.0.0.1:9/x",
        "verification_token": "  "}}, headers=h)
    assert magento.status_code == 422
    assert magento.json()["field"] == "asyncEvent.verification_token"
    sub = api.subscription()
    rotated = api.client.patch(f"/v1/subscriptions/{sub.id}",
                               json={"verification_token": "  "}, headers=h)
    assert rotated.status_code == 422 and rotated.json()["field"] == "verification_token"
    assert api.app.store.list_subscriptions() == [sub]


# Issue 23, item 7: credentials in a recipient URL are never shown; secret headers stay
# with their host.

CREDENTIALS = "http://hookuser:pa55-in-url@127.0.0.1:9/hook"


def test_recipient_credentials_are_shown_nowhere(api: Api) -> None:
    sub = api.subscription(recipient=CREDENTIALS)
    delivery = api.delivery(sub)
    shown = "http://***@127.0.0.1:9/hook"
    read = api.auth("subscriptions:read")
    answers = {
        "get": api.client.get(f"/v1/subscriptions/{sub.id}", headers=read),
        "list": api.client.get("/v1/subscriptions", headers=read),
        "magento": api.client.get(f"/V1/async_event/{sub.id}", headers=read),
        "magento list": api.client.get("/V1/async_events", headers=read),
        "search": api.client.get("/v1/deliveries", headers=api.auth("deliveries:read")),
        "trace": api.client.get(f"/v1/deliveries/{delivery.id}",
                                headers=api.auth("deliveries:read")),
    }
    login(api, "subscriptions:read")
    for page in ("/console/subscriptions", f"/console/subscriptions/{sub.id}"):
        answers[page] = api.client.get(page)
    login(api, "deliveries:read")
    for page in ("/console/deliveries", f"/console/deliveries/{delivery.id}",
                 "/console/dashboard"):
        answers[page] = api.client.get(page)
    for name, answer in answers.items():
        assert answer.status_code == 200, (name, answer.text)
        assert "pa55-in-url" not in answer.text and "hookuser" not in answer.text, name
    assert answers["get"].json()["recipient"] == shown
    assert answers["trace"].json()["recipient"] == shown
    assert "***@127.0.0.1:9/hook" in answers[f"/console/subscriptions/{sub.id}"].text
    # The stored recipient keeps them: the sink delivers with them.
    assert api.app.store.get_subscription(sub.id).recipient == CREDENTIALS
    _, joined = api.app.store.delivery_and_subscription(delivery.id)
    assert joined is not None and joined.recipient == CREDENTIALS


def test_the_console_edit_form_keeps_credentials_it_shows_masked(api: Api) -> None:
    sub = api.subscription(recipient=CREDENTIALS, headers={"Authorization": "Bearer h-secret",
                                                           "X-Tenant": "acme"})
    login(api)
    page = f"/console/subscriptions/{sub.id}"
    form = {"recipient": "http://***@127.0.0.1:9/hook", "token": "", "filter": "",
            "max_deaths": "", "backoff": "", "base": "", "max_backoff": "", "jitter": "",
            "rate": "5/s", "max_in_flight": "", "ordering_key": "", "signature": "hmac",
            "headers": "Authorization: ***\nX-Tenant: acme", "disable_after": ""}
    saved = api.client.post(page, data={**form, "csrf": csrf(api, page)})
    assert saved.status_code == 200 and "subscription saved" in saved.text
    kept = api.app.store.get_subscription(sub.id)
    assert (kept.recipient, kept.rate) == (CREDENTIALS, "5/s")
    assert kept.headers["Authorization"] == "Bearer h-secret"
    # Another path on the same host: the credentials typed as *** come back.
    api.client.post(page, data={**form, "recipient": "http://***@127.0.0.1:9/other",
                                "csrf": csrf(api, page)})
    assert api.app.store.get_subscription(sub.id).recipient == (
        "http://hookuser:pa55-in-url@127.0.0.1:9/other")
    # Another host: the masked header does not follow; nor do the URL's credentials.
    moved = api.client.post(page, data={**form, "recipient": "http://***@127.0.0.2:9/hook",
                                        "headers": "Authorization: ***\nX-Tenant: other",
                                        "csrf": csrf(api, page)})
    assert moved.status_code == 200, moved.text
    after = api.app.store.get_subscription(sub.id)
    assert after.recipient == "http://***@127.0.0.2:9/hook"
    assert after.headers == {"X-Tenant": "other"}
    again = api.subscription(headers={"Authorization": "Bearer h-secret"})
    page = f"/console/subscriptions/{again.id}"
    moved = api.client.post(page, data={**form, "recipient": "http://127.0.0.2:9/hook",
                                        "headers": "Authorization: ***",
                                        "csrf": csrf(api, page)})
    assert moved.status_code == 200 and "Authorization dropped" in moved.text
    assert api.app.store.get_subscription(again.id).headers == {}


def test_patching_the_recipient_to_another_host_drops_secret_headers(api: Api) -> None:
    sub = api.subscription(headers={"Authorization": "Bearer h-secret", "X-Tenant": "acme"})
    write = api.auth("subscriptions:write")
    same = api.client.patch(f"/v1/subscriptions/{sub.id}",
                            json={"recipient": "http://127.0.0.1:9/elsewhere"}, headers=write)
    assert same.status_code == 200 and same.json()["warnings"] == []
    assert api.app.store.get_subscription(sub.id).headers["Authorization"] == "Bearer h-secret"
    moved = api.client.patch(f"/v1/subscriptions/{sub.id}",
                             json={"recipient": "http://127.0.0.2:9/hook"}, headers=write)
    assert moved.status_code == 200, moved.text
    assert moved.json()["headers"] == {"X-Tenant": "acme"}
    assert any("Authorization dropped" in w for w in moved.json()["warnings"])
    assert api.app.store.get_subscription(sub.id).headers == {"X-Tenant": "acme"}
    # Given again with the move, a secret header goes to the new host.
    again = api.client.patch(f"/v1/subscriptions/{sub.id}", json={
        "recipient": "http://127.0.0.3:9/hook",
        "headers": {"Authorization": "Bearer new-host", "X-Tenant": "acme"}}, headers=write)
    assert again.status_code == 200 and again.json()["warnings"] == []
    assert api.app.store.get_subscription(sub.id).headers["Authorization"] == "Bearer new-host"
