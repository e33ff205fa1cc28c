"""Receiver protection options (issue 15, item 1): one set of rules behind the CLI, the
Python API, REST (create and PATCH) and the console form; stored on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from asyncevents.core.app import App
from asyncevents.errors import ConfigError
from tests.api.conftest import TOKEN, Api, _keep_logging_config, make_api  # noqa: F401
from tests.api.helpers import csrf, login
from tests.helpers import run_cli

OPTIONS = {"rate": "10/s", "max_in_flight": 3, "ordering_key": "data.customer_id",
           "headers": {"X-Tenant": "acme", "Authorization": "Bearer s3cret-value"},
           "disable_after": 48}


@pytest.fixture
def api(make_api: Callable[..., Api]) -> Api:  # noqa: F811 (the imported fixture)
    return make_api()


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_python_api_round_trip(store: str, make_settings: Callable[..., Any],
                               request: pytest.FixtureRequest) -> None:
    overrides = {} if store == "sqlite" else {"database_url": request.getfixturevalue("pg_url")}
    settings = make_settings(**overrides)
    if store == "postgresql":
        from asyncevents.core.store import Store
        Store.open(settings.database_url, auto_migrate=True).close()
    app = App(settings)
    try:
        sub = app.subscribe("shop.order.created", "http://127.0.0.1:9/hook", token=TOKEN,
                            **OPTIONS)
        stored = app.store.get_subscription(sub.id)
        assert (stored.rate, stored.max_in_flight, stored.ordering_key, stored.signature,
                stored.headers, stored.disable_after) == (
            "10/s", 3, "data.customer_id", "hmac", OPTIONS["headers"], 48)
        assert stored.rate_per_second == 10.0
        # The worker's read path (one query for deliveries and subscriptions) sees them too.
        (delivery,) = app.store.ensure_deliveries(
            event_id="e1", event_name=sub.event_name, published_at=stored.created_at,
            payload={"customer_id": 7}, targets=[stored])
        _, joined = app.store.delivery_and_subscription(delivery.id)
        assert joined is not None and joined.headers == OPTIONS["headers"]
        changed = app.update_subscription(sub.id, rate="30/m", max_in_flight=None,
                                          headers={"X-Tenant": "other"})
        assert changed.rate == "30/m" and changed.rate_per_second == 0.5
        assert changed.max_in_flight is None and changed.headers == {"X-Tenant": "other"}
        assert changed.ordering_key == "data.customer_id"  # left out: unchanged
        before = app.store.get_subscription(sub.id)
        with pytest.raises(ConfigError) as refused:
            app.update_subscription(sub.id, headers={"webhook-signature": "v1,forged"})
        assert refused.value.field == "headers" and "cannot be overridden" in str(refused.value)
        assert app.store.get_subscription(sub.id) == before
    finally:
        app.close()


@pytest.mark.parametrize(("options", "field", "words"), [
    ({"rate": "10/h"}, "rate", "N/s or N/m"),
    ({"rate": "0/s"}, "rate", "above 0"),
    ({"max_in_flight": 0}, "max_in_flight", "1 or more"),
    ({"ordering_key": "customer_id"}, "ordering_key", "data.customer_id"),
    ({"signature": "rsa"}, "signature", "hmac or ed25519"),
    ({"headers": {"Content-Type": "text/plain"}}, "headers", "cannot be overridden"),
    ({"headers": {"Webhook-Id": "x"}}, "headers", "cannot be overridden"),
    ({"headers": {"X-A": "one\r\nX-B: two"}}, "headers", "one line"),
    ({"headers": {"bad name": "x"}}, "headers", "invalid header name"),
    ({"disable_after": -1}, "disable_after", "above 0"),
])
def test_rules_refuse_bad_options_everywhere(api: Api, options: dict[str, Any], field: str,
                                            words: str) -> None:
    with pytest.raises(ConfigError) as refused:
        api.subscription(**options)
    assert refused.value.field == field and words in str(refused.value)
    body = {"event_name": "shop.order.created", "recipient": "http://127.0.0.1:9/hook",
            "verification_token": TOKEN, **options}
    rest = api.client.post("/v1/subscriptions", json=body, headers=api.auth())
    assert rest.status_code == 422, rest.text
    assert rest.json()["field"] == field or rest.json()["field"].startswith(field)
    sub = api.subscription()
    patched = api.client.patch(f"/v1/subscriptions/{sub.id}", json=options, headers=api.auth())
    assert patched.status_code == 422
    assert api.app.store.get_subscription(sub.id) == sub
    assert len(api.app.store.list_subscriptions()) == 1


def test_rest_create_patch_and_get(api: Api) -> None:
    body = {"event_name": "shop.order.created", "recipient": "http://127.0.0.1:9/hook",
            "verification_token": TOKEN, **OPTIONS}
    created = api.client.post("/v1/subscriptions", json=body, headers=api.auth())
    assert created.status_code == 201, created.text
    shown = created.json()
    assert shown["rate"] == "10/s" and shown["max_in_flight"] == 3
    assert shown["ordering_key"] == "data.customer_id" and shown["signature"] == "hmac"
    assert shown["disable_after"] == 48
    # A secret-looking header's value is never returned.
    assert shown["headers"] == {"X-Tenant": "acme", "Authorization": "***"}
    assert "s3cret-value" not in created.text
    sub_id = shown["id"]
    patched = api.client.patch(f"/v1/subscriptions/{sub_id}", headers=api.auth(),
                               json={"rate": None, "max_in_flight": 5})
    assert patched.status_code == 200, patched.text
    assert patched.json()["rate"] is None and patched.json()["max_in_flight"] == 5
    got = api.client.get(f"/v1/subscriptions/{sub_id}", headers=api.auth()).json()
    assert got["max_in_flight"] == 5 and got["ordering_key"] == "data.customer_id"
    stored = api.app.store.get_subscription(sub_id)
    assert stored.headers["Authorization"] == "Bearer s3cret-value"  # kept, only masked


def test_console_form_creates_and_edits_the_options(api: Api) -> None:
    login(api)
    form = {"event_name": "shop.order.created", "sink": "http",
            "recipient": "http://127.0.0.1:9/new", "token": TOKEN, "filter": "",
            "max_deaths": "", "backoff": "", "base": "", "max_backoff": "", "jitter": "",
            "rate": "5/s", "max_in_flight": "2", "ordering_key": "data.customer_id",
            "signature": "hmac", "headers": "X-Tenant: acme\nX-Api-Key: k3y-value",
            "disable_after": "24", "csrf": csrf(api, "/console/subscriptions/new")}
    done = api.client.post("/console/subscriptions/new", data=form, follow_redirects=False)
    assert done.status_code == 303, done.text
    (sub,) = api.app.store.list_subscriptions()
    assert (sub.rate, sub.max_in_flight, sub.ordering_key, sub.disable_after) == (
        "5/s", 2, "data.customer_id", 24)
    assert sub.headers == {"X-Tenant": "acme", "X-Api-Key": "k3y-value"}
    page = api.client.get(f"/console/subscriptions/{sub.id}").text
    assert 'name="rate" value="5/s"' in page and "X-Api-Key: ***" in page
    assert "k3y-value" not in page
    # Edit: the masked header keeps its value; the rate changes; a refusal stores nothing.
    edit = {**form, "token": "", "csrf": csrf(api, f"/console/subscriptions/{sub.id}"),
            "rate": "1/m", "headers": "X-Tenant: acme\nX-Api-Key: ***"}
    saved = api.client.post(f"/console/subscriptions/{sub.id}", data=edit)
    assert saved.status_code == 200 and "subscription saved" in saved.text
    after = api.app.store.get_subscription(sub.id)
    assert after.rate == "1/m" and after.headers["X-Api-Key"] == "k3y-value"
    refused = api.client.post(f"/console/subscriptions/{sub.id}",
                              data={**edit, "headers": "Content-Type: text/plain"})
    assert refused.status_code == 422 and "cannot be overridden" in refused.text
    assert api.app.store.get_subscription(sub.id) == after


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "asyncevents.toml").write_text(
        'allowed_networks = ["127.0.0.0/8"]\nstrict_events = false\n')
    return tmp_path


def test_cli_subscribe_update_and_show(workdir: Path) -> None:
    made = run_cli("subscribe", "shop.order.created", "http://127.0.0.1:9/hook",
                   "--token", TOKEN, "--rate", "10/s", "--max-in-flight", "3",
                   "--ordering-key", "data.customer_id", "--header", "X-Tenant: acme",
                   "--header", "X-Region: eu", "--disable-after", "48", "--json",
                   cwd=workdir)
    assert made.returncode == 0, made.stderr
    sub = json.loads(made.stdout)
    assert sub["rate"] == "10/s" and sub["headers"] == {"X-Tenant": "acme", "X-Region": "eu"}
    changed = run_cli("subscriptions", "update", sub["id"], "--rate", "none",
                      "--max-in-flight", "8", "--header", "X-Tenant: other", "--json",
                      cwd=workdir)
    assert changed.returncode == 0, changed.stderr
    after = json.loads(changed.stdout)
    assert after["rate"] is None and after["max_in_flight"] == 8
    assert after["headers"] == {"X-Tenant": "other"} and after["disable_after"] == 48
    refused = run_cli("subscriptions", "update", sub["id"], "--header",
                      "webhook-signature: v1,forged", cwd=workdir)
    assert refused.returncode != 0
    (line,) = refused.stderr.strip().splitlines()
    assert line.startswith("error: --header:") and "cannot be overridden" in line
    shown = run_cli("subscriptions", "show", sub["id"], "--json", cwd=workdir)
    assert json.loads(shown.stdout)["headers"] == {"X-Tenant": "other"}  # untouched
    bad = run_cli("subscriptions", "update", sub["id"], "--max-in-flight", "many", cwd=workdir)
    assert bad.returncode != 0 and len(bad.stderr.strip().splitlines()) == 1
    assert "--max-in-flight" in bad.stderr
