"""Signing-secret rotation with a grace period (issue 15, item 3): a worker delivers to a real
receiver; the `standardwebhooks` library verifies under both tokens during the grace and only
the new one after; neither token is ever shown; the old one is encrypted at rest."""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from pytest_httpserver import HTTPServer
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from asyncevents.core.app import App
from asyncevents.core.store import Store
from asyncevents.core.store.crypto import TokenCipher
from asyncevents.errors import ConfigError
from tests.api.conftest import Api, _keep_logging_config, make_api  # noqa: F401
from tests.api.helpers import csrf, login
from tests.helpers import Hit, Recorder, drain, run_cli


def _secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


OLD, NEW = _secret(), _secret()


def _verifies(secret: str, hit: Hit) -> bool:
    try:
        Webhook(secret).verify(hit.body, {k: hit.headers[k] for k in
                                          ("webhook-id", "webhook-timestamp",
                                           "webhook-signature")})
    except WebhookVerificationError:
        return False
    return True


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_both_signatures_during_the_grace_then_only_the_new(
        store: str, server: HTTPServer, app_on: Callable[..., App]) -> None:
    app = app_on(store)
    recorder = Recorder(server)
    try:
        hook = recorder.route("/hook")
        sub = app.subscribe("sales.order.created", hook, token=OLD)
        app.publish("sales.order.created", {"n": 0})
        drain(app)
        rotated = app.rotate_token(sub.id, NEW, grace="1h")
        assert rotated.previous_token_until is not None
        app.publish("sales.order.created", {"n": 1})
        drain(app)
        before, during = recorder.on("/hook")
        assert _verifies(OLD, before) and not _verifies(NEW, before)
        assert len(during.headers["webhook-signature"].split(" ")) == 2
        assert _verifies(OLD, during) and _verifies(NEW, during)  # receivers switch any time
        # The old token is stored encrypted, never in clear.
        with sa.create_engine(app.settings.database_url).connect() as conn:
            stored = conn.execute(sa.text(
                "SELECT previous_token, token FROM asyncevents_subscription")).one()
        assert all(TokenCipher.is_encrypted(v) for v in stored)
        assert OLD not in "".join(stored) and NEW not in "".join(stored)
        # A short grace, then wait it out: only the new token signs.
        app.rotate_token(sub.id, _secret(), grace=0)  # 0: the replaced one stops now
        newest = _secret()
        app.rotate_token(sub.id, newest, grace="1s")
        time.sleep(1.2)
        app.publish("sales.order.created", {"n": 2})
        drain(app)
        after = recorder.on("/hook")[2]
        assert " " not in after.headers["webhook-signature"]
        assert _verifies(newest, after) and not _verifies(OLD, after)
    finally:
        app.close()


@pytest.fixture
def api(make_api: Callable[..., Api]) -> Api:  # noqa: F811 (the imported fixture)
    return make_api()


def test_rest_and_console_rotate_without_showing_a_token(api: Api) -> None:
    sub = api.subscription(token=OLD)
    answer = api.client.post(f"/v1/subscriptions/{sub.id}/rotate-token", headers=api.auth(),
                             json={"verification_token": NEW, "grace": "2h"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["rotation_grace_until"] is not None
    assert OLD not in answer.text and NEW not in answer.text
    stored = api.app.store.get_subscription(sub.id)
    assert (stored.token, stored.previous_token) == (NEW, OLD)
    shown = api.client.get(f"/v1/subscriptions/{sub.id}", headers=api.auth()).text
    assert OLD not in shown and NEW not in shown
    for bad in ("forever", "31d", -5):
        refused = api.client.post(f"/v1/subscriptions/{sub.id}/rotate-token",
                                  headers=api.auth(), json={"verification_token": "x" + NEW,
                                                            "grace": bad})
        assert refused.status_code == 422 and refused.json()["field"] == "grace"
    assert api.app.store.get_subscription(sub.id) == stored
    # The console's rotation form.
    login(api)
    third = _secret()
    done = api.client.post(f"/console/subscriptions/{sub.id}/rotate-token", data={
        "csrf": csrf(api, f"/console/subscriptions/{sub.id}"), "token": third, "grace": "30m"})
    assert done.status_code == 200 and "token rotated" in done.text
    assert third not in done.text and NEW not in done.text
    assert 'id="token-grace"' in done.text
    after = api.app.store.get_subscription(sub.id)
    assert (after.token, after.previous_token) == (third, NEW)
    refused = api.client.post(f"/console/subscriptions/{sub.id}/rotate-token", data={
        "csrf": csrf(api, f"/console/subscriptions/{sub.id}"), "token": OLD, "grace": "a week"})
    assert refused.status_code == 422 and "invalid grace" in refused.text
    assert api.app.store.get_subscription(sub.id) == after


def test_python_api_refuses_bad_input_with_the_field(api: Api) -> None:
    sub = api.subscription(token=OLD)
    with pytest.raises(ConfigError) as refused:
        api.app.rotate_token(sub.id, "whsec_not base64!", grace="1h")
    assert refused.value.field == "token" and "whsec_not" not in str(refused.value)
    with pytest.raises(ConfigError) as refused:
        api.app.rotate_token(sub.id, NEW, grace="1y")
    assert refused.value.field == "grace"
    assert api.app.store.get_subscription(sub.id) == sub


def test_store_key_rotation_re_encrypts_the_old_token(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    first = Store.open(url, cipher=TokenCipher("first key"))
    sub = first.create_subscription(event_name="a", sink="http", recipient="http://x/",
                                    token=OLD)
    first.update_subscription(sub.id, token=NEW, previous_token=OLD)
    first.close()
    second = Store.open(url, cipher=TokenCipher("second key"))
    assert second.rotate_tokens(TokenCipher("first key")) == 2
    assert second.get_subscription(sub.id).previous_token == OLD
    second.close()


def test_cli_rotate_token(tmp_path: Path) -> None:
    (tmp_path / "asyncevents.toml").write_text(
        'allowed_networks = ["127.0.0.0/8"]\nstrict_events = false\n')
    made = run_cli("subscribe", "a.b", "http://127.0.0.1:9/hook", "--token", OLD, "--json",
                   cwd=tmp_path)
    sub_id = json.loads(made.stdout)["id"]
    done = run_cli("subscriptions", "rotate-token", sub_id, "--token", NEW, "--grace", "24h",
                   cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "the old one also signs until" in done.stdout
    assert OLD not in done.stdout + done.stderr and NEW not in done.stdout + done.stderr
    bad = run_cli("subscriptions", "rotate-token", sub_id, "--token", OLD, "--grace", "soon",
                  cwd=tmp_path)
    assert bad.returncode != 0
    (line,) = bad.stderr.strip().splitlines()
    assert line.startswith("error: --grace: invalid grace")
    shown = json.loads(run_cli("subscriptions", "show", sub_id, "--json", cwd=tmp_path).stdout)
    assert shown["rotation_grace_until"] is not None
