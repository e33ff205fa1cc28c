"""Ed25519 signatures (issue 15, item 4): Standard Webhooks ``v1a``, verified with
`cryptography`'s Ed25519PublicKey (an implementation of its own) from the ``whpk_`` public key
the subscription shows; the ``whsk_`` private key generated or given, encrypted at rest."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from pytest_httpserver import HTTPServer

from asyncevents.core.app import App
from asyncevents.core.store.crypto import TokenCipher
from asyncevents.errors import ConfigError
from tests.api.conftest import Api, _keep_logging_config, make_api  # noqa: F401
from tests.api.helpers import login
from tests.helpers import Hit, Recorder, drain, run_cli

TOKEN = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="


def _verifies(public_key: str, hit: Hit) -> bool:
    assert public_key.startswith("whpk_")
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key[len("whpk_"):]))
    scheme, _, signature = hit.headers["webhook-signature"].partition(",")
    assert scheme == "v1a"
    signed = b"%s.%s.%s" % (hit.headers["webhook-id"].encode(),
                            hit.headers["webhook-timestamp"].encode(), hit.body)
    try:
        key.verify(base64.b64decode(signature), signed)
    except InvalidSignature:
        return False
    return True


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_a_worker_signs_v1a_that_the_public_key_verifies(
        store: str, server: HTTPServer, app_on: Callable[..., App]) -> None:
    app = app_on(store)
    recorder = Recorder(server)
    try:
        hook = recorder.route("/hook")
        sub = app.subscribe("sales.order.created", hook, token=TOKEN, signature="ed25519")
        assert sub.public_key and sub.public()["public_key"] == sub.public_key
        app.publish("sales.order.created", {"id": 1})
        drain(app)
        (hit,) = recorder.on("/hook")
        assert _verifies(sub.public_key, hit)
        other = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
        assert not _verifies("whpk_" + base64.b64encode(other).decode(), hit)
        with sa.create_engine(app.settings.database_url).connect() as conn:
            stored = conn.execute(sa.text(
                "SELECT signing_key FROM asyncevents_subscription")).scalar_one()
        assert TokenCipher.is_encrypted(stored) and "whsk_" not in stored
        # Back to hmac: v1 again, and the key is dropped.
        back = app.update_subscription(sub.id, signature="hmac")
        assert back.public_key is None and app.store.get_subscription(sub.id).signing_key == ""
        app.publish("sales.order.created", {"id": 2})
        drain(app)
        assert recorder.on("/hook")[1].headers["webhook-signature"].startswith("v1,")
    finally:
        app.close()


@pytest.fixture
def api(make_api: Callable[..., Api]) -> Api:  # noqa: F811 (the imported fixture)
    return make_api()


def test_a_given_key_rest_and_the_private_key_never_shown(api: Api) -> None:
    seed = Ed25519PrivateKey.generate()
    whsk = "whsk_" + base64.b64encode(seed.private_bytes_raw()).decode()
    whpk = "whpk_" + base64.b64encode(seed.public_key().public_bytes_raw()).decode()
    created = api.client.post("/v1/subscriptions", headers=api.auth(), json={
        "event_name": "a.b", "recipient": "http://127.0.0.1:9/hook",
        "verification_token": whsk, "signature": "ed25519"})
    assert created.status_code == 201, created.text
    assert created.json()["public_key"] == whpk and created.json()["signature"] == "ed25519"
    assert whsk not in created.text
    sub_id = created.json()["id"]
    # An update that leaves the key alone keeps it.
    kept = api.client.patch(f"/v1/subscriptions/{sub_id}", headers=api.auth(),
                            json={"rate": "5/s"})
    assert kept.json()["public_key"] == whpk
    assert api.app.store.get_subscription(sub_id).signing_key == whsk
    # A new whsk_ token is a new key; a malformed one is one line naming the token.
    fresh = Ed25519PrivateKey.generate()
    api.app.update_subscription(
        sub_id, token="whsk_" + base64.b64encode(fresh.private_bytes_raw()).decode())
    assert api.app.store.get_subscription(sub_id).public_key == (
        "whpk_" + base64.b64encode(fresh.public_key().public_bytes_raw()).decode())
    refused = api.client.post("/v1/subscriptions", headers=api.auth(), json={
        "event_name": "a.b", "recipient": "http://127.0.0.1:9/hook",
        "verification_token": "whsk_c2hvcnQ=", "signature": "ed25519"})
    assert refused.status_code == 422 and refused.json()["field"] == "verification_token"
    assert "whsk_c2hvcnQ=" not in refused.text
    with pytest.raises(ConfigError, match="signs with its key"):
        api.app.rotate_token(sub_id, TOKEN)
    # The console shows the public key, never the private one.
    login(api)
    page = api.client.get(f"/console/subscriptions/{sub_id}").text
    assert 'id="public-key"' in page and api.app.store.get_subscription(sub_id).public_key in page
    assert "whsk_" not in page and '<option value="ed25519" selected>' in page


def test_cli_subscribe_ed25519_shows_the_public_key(tmp_path: Path) -> None:
    (tmp_path / "asyncevents.toml").write_text(
        'allowed_networks = ["127.0.0.0/8"]\nstrict_events = false\n')
    made = run_cli("subscribe", "a.b", "http://127.0.0.1:9/hook", "--token", TOKEN,
                   "--signature", "ed25519", "--json", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    shown = json.loads(made.stdout)
    assert shown["public_key"].startswith("whpk_") and "whsk_" not in made.stdout
    switched = run_cli("subscriptions", "update", shown["id"], "--signature", "hmac", "--json",
                       cwd=tmp_path)
    assert json.loads(switched.stdout)["public_key"] is None
