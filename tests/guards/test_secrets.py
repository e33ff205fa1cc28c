"""Secrets never leak: verification tokens and API tokens, in no log, trace, error or response.

A full run through the real CLI (subscribe, publish, a worker at DEBUG with
failing receivers, search, trace, replay, subscriptions, error paths) and
through the REST API, with recognisable tokens. Every captured stdout and
stderr, every API response body and the attempts and deliveries tables are
scanned for them, and the whole store file too (the token is encrypted at
rest: with ``ASYNCEVENTS_SECRET_KEY``, or with the store's own key file).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import structlog

from asyncevents.core.app import App
from faults.receiver import Receiver
from tests.helpers import run_cli

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's note about httpx2
    from fastapi.testclient import TestClient

from asyncevents.api.app import create_app


class Run:
    """Runs CLI commands in one directory and keeps everything they printed."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.cwd = cwd
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCEVENTS_")}
        self.env.update(env)
        self.captured: list[tuple[str, str]] = []

    def __call__(self, *args: str, ok: bool = True, keep: bool = True) -> str:
        result = subprocess.run([sys.executable, "-m", "asyncevents", *args], cwd=self.cwd,
                                env=self.env, capture_output=True, text=True, timeout=120)
        if ok:
            assert result.returncode == 0, (args, result.stderr)
        if keep:
            self.captured.append((" ".join(args[:3]), result.stdout + result.stderr))
        return result.stdout


def _table_text(url: str, table: str) -> str:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text(f"SELECT * FROM {table}"))
            return "\n".join(repr(tuple(row)) for row in rows)
    finally:
        engine.dispose()


@pytest.mark.slow
@pytest.mark.parametrize("encrypted", [False, True], ids=["plain-store", "secret-key"])
def test_no_token_in_any_output_of_a_full_run(tmp_path: Path, encrypted: bool) -> None:
    marker = f"LEAKCHECK{uuid.uuid4().hex}"
    raw_token = f"tok-{marker}"  # used as the raw HMAC key
    bad_token = f"whsec_{marker}!!"  # refused: not base64
    receiver = Receiver()
    (tmp_path / "asyncevents.toml").write_text(
        'strict_events = false\nallowed_networks = ["127.0.0.0/8"]\n'
        "max_deaths = 2\nbackoff = \"fixed\"\nbackoff_base = 0.2\n")
    env = {"ASYNCEVENTS_LOG_LEVEL": "DEBUG"}
    if encrypted:
        env["ASYNCEVENTS_SECRET_KEY"] = "a secret key for the leak test, long enough"
    cli = Run(tmp_path, env)
    try:
        subs = [json.loads(cli("subscribe", "*", receiver.url(mode), "--token", raw_token,
                               "--json"))["id"] for mode in ("flaky", "echo", "ok")]
        cli("subscribe", "*", receiver.url("ok"), "--token", bad_token, ok=False)
        cli("subscribe", "*", "http://10.0.0.1/x", "--token", raw_token, ok=False)
        for n in range(3):
            cli("publish", "leak.test", "--data", json.dumps({"n": n}))
        cli("worker", "--concurrency", "2", "--max-idle-time", "2")
        found = json.loads(cli("search", "*", "--json"))
        assert len(found) == 9
        for row in found:
            cli("trace", row["uuid"], "--json")
            cli("trace", row["uuid"])
        cli("replay", found[0]["uuid"])
        cli("worker", "--max-idle-time", "1")
        cli("search", "*", "--csv")
        cli("subscriptions", "list", "--json")
        cli("subscriptions", "list")
        for sub in subs:
            cli("subscriptions", "show", sub, "--json")
            cli("subscriptions", "show", sub)
        cli("subscriptions", "disable", subs[0], "--json")
        created = json.loads(cli("tokens", "create", "leak", "--scope", "admin", "--json",
                                 keep=False))  # the one place the API token is shown
        api_token = created["token"]
        cli("tokens", "list", "--json")
        cli("search", "status:(dead", ok=False)
        cli("trace", "no-such-delivery", ok=False)
    finally:
        receiver.close()

    echoed = [h for h in receiver.snapshot() if h.mode == "echo"]
    assert echoed, "the echo receiver was never called: the run proves nothing"
    for command, text in cli.captured:
        assert marker not in text, f"the token leaked through '{command}': {text[:2000]}"
        assert api_token not in text, f"the API token leaked through '{command}'"
    store = f"sqlite:///{tmp_path / 'asyncevents.db'}"
    for table in ("asyncevents_attempt", "asyncevents_delivery"):
        assert marker not in _table_text(store, table), f"the token is in {table}"
    # Encrypted at rest either way: with the key, or with the store's own asyncevents.key.
    assert (tmp_path / "asyncevents.key").exists() is not encrypted
    for path in tmp_path.glob("asyncevents.db*"):
        assert marker.encode() not in path.read_bytes(), f"the token is in {path.name}"


@pytest.fixture
def _quiet_structlog() -> Any:
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.mark.usefixtures("_quiet_structlog")
def test_no_token_in_api_responses_or_logs(
    make_settings: Callable[..., Any], capsys: pytest.CaptureFixture[str]
) -> None:
    from asyncevents.api.services.tokens import create_token
    from asyncevents.core.log import configure_logging

    configure_logging("DEBUG")
    marker = f"LEAKCHECK{uuid.uuid4().hex}"
    app = App(make_settings())
    admin = create_token(app.store, "admin", ["admin"])[1]
    reader = create_token(app.store, "reader", ["subscriptions:read"])[1]
    client = TestClient(create_app(app), raise_server_exceptions=False)
    auth = {"Authorization": f"Bearer {admin}"}
    bodies: list[str] = []
    try:
        created = client.post("/v1/subscriptions", headers=auth, json={
            "event_name": "leak.*", "recipient": "http://127.0.0.1:9/hook",
            "verification_token": f"tok-{marker}"})
        assert created.status_code == 201, created.text
        sub_id = created.json()["id"]
        responses = [
            created,
            client.get("/v1/subscriptions", headers=auth),
            client.get(f"/v1/subscriptions/{sub_id}", headers=auth),
            client.patch(f"/v1/subscriptions/{sub_id}", headers=auth,
                         json={"verification_token": f"tok2-{marker}"}),
            # refused tokens and bodies must not be echoed back
            client.post("/v1/subscriptions", headers=auth, json={
                "event_name": "leak.*", "recipient": "http://127.0.0.1:9/hook",
                "verification_token": f"whsec_{marker}!!"}),
            client.post("/v1/subscriptions", headers=auth, json={
                "event_name": "leak.*", "recipient": f"http://10.0.0.1/{marker}x",
                "verification_token": f"tok-{marker}", "unexpected": 1}),
            client.post("/v1/subscriptions", headers=auth, json={
                "event_name": "leak.*", "recipient": "http://127.0.0.1:9/hook",
                "verification_token": [f"tok-{marker}"]}),
            client.get("/v1/subscriptions", headers={"Authorization": f"Bearer {admin}x"}),
            client.post("/v1/subscriptions", headers={"Authorization": f"Bearer {reader}"},
                        json={"event_name": "leak.*", "recipient": "http://127.0.0.1:9/h",
                              "verification_token": f"tok-{marker}"}),
            client.get("/v1/tokens", headers=auth),
        ]
        bodies = [r.text for r in responses]
    finally:
        client.close()
        app.close()
    logs = capsys.readouterr()
    for text in [*bodies, logs.out, logs.err]:
        assert marker not in text, text[:2000]
        assert admin not in text and reader not in text, text[:2000]


# Issue 23: a server database never holds a secret in clear; a wrong key stops at start.

def test_a_server_database_stores_no_secret_without_a_key(
        pg_url: str, make_settings: Callable[..., Any], tmp_path: Path) -> None:
    from asyncevents.core.store import MISSING_KEY, Store
    from asyncevents.errors import ConfigError

    Store.open(pg_url, auto_migrate=True).close()
    env = {"ASYNCEVENTS_DATABASE_URL": pg_url, "ASYNCEVENTS_STRICT_EVENTS": "false",
           "ASYNCEVENTS_TRANSPORT_URL": f"sqla+sqlite:///{tmp_path / 'q.db'}",
           "ASYNCEVENTS_ALLOWED_NETWORKS": "127.0.0.0/8"}
    runs = [["subscribe", "a.b", "http://127.0.0.1:9/x", "--token", "supersecret"],
            ["subscribe", "a.b", "http://127.0.0.1:9/x", "--token", "t",
             "--header", "Authorization: Bearer supersecret"],
            ["worker", "--max-idle-time", "0"], ["serve", "--port", "1"]]
    for key in (None, "", "  "):  # unset, or set empty: the same
        given = env if key is None else {**env, "ASYNCEVENTS_SECRET_KEY": key}
        for command in runs:
            refused = run_cli(*command, cwd=tmp_path, env=given)
            lines = refused.stderr.strip().splitlines()
            assert refused.returncode == 1, (command, key, refused.stderr)
            assert lines == [f"error: {MISSING_KEY}"], (command, key, lines)
    app = App(make_settings(database_url=pg_url, secret_key=""))
    with pytest.raises(ConfigError, match="ASYNCEVENTS_SECRET_KEY is not set"):
        app.subscribe("a.b", "http://127.0.0.1:9/x", token="supersecret")
    app.close()
    assert _table_text(pg_url, "asyncevents_subscription") == ""


def test_worker_and_serve_refuse_a_wrong_key_at_start(
        make_settings: Callable[..., Any], tmp_path: Path) -> None:
    settings = make_settings(secret_key="the right key")
    app = App(settings)
    app.subscribe("a.b", "http://127.0.0.1:9/x", token="tok")
    event_id = app.publish("a.b", {"n": 1})
    app.close()
    env = {"ASYNCEVENTS_DATABASE_URL": settings.database_url,
           "ASYNCEVENTS_TRANSPORT_URL": settings.transport_url,
           "ASYNCEVENTS_QUEUE_PREFIX": settings.queue_prefix,
           "ASYNCEVENTS_STRICT_EVENTS": "false", "ASYNCEVENTS_SECRET_KEY": "a typo"}
    for command in (["worker", "--max-idle-time", "30"], ["serve", "--port", "1"]):
        refused = run_cli(*command, cwd=tmp_path, env=env, timeout=20)
        lines = refused.stderr.strip().splitlines()
        assert refused.returncode == 1 and len(lines) == 1, (command, refused.stderr)
        assert "is not the key this installation's secrets are encrypted with" in lines[0]
        assert "a typo" not in refused.stderr
    # Nothing was taken: the event still waits for a worker with the right key.
    right = run_cli("worker", "--max-idle-time", "2", "--json", cwd=tmp_path,
                    env={**env, "ASYNCEVENTS_SECRET_KEY": "the right key"}, timeout=60)
    assert right.returncode == 0, right.stderr
    assert json.loads(right.stdout)["handled"] >= 1  # the event's dispatch, at least
    assert event_id in _table_text(settings.database_url, "asyncevents_delivery")


# Issue 23, item 8: the console's session id and the API token it was opened with, and the
# wrong tokens a throttled client sent, in no response, log line or session row.

@pytest.mark.usefixtures("_quiet_structlog")
def test_no_api_token_or_session_id_in_console_responses_logs_or_rows(
        make_settings: Callable[..., Any], capsys: pytest.CaptureFixture[str]) -> None:
    import re

    from asyncevents.api.services.tokens import create_token
    from asyncevents.core.log import configure_logging

    configure_logging("DEBUG")
    app = App(make_settings())
    admin = create_token(app.store, "admin", ["admin"])[1]
    client = TestClient(create_app(app), raise_server_exceptions=False)
    wrong = [f"ae_LEAKCHECK{uuid.uuid4().hex}" for _ in range(11)]
    bodies: list[str] = []
    try:
        form = client.get("/console/login")
        value = re.search(r'name="login_csrf" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
        login = client.post("/console/login", data={"token": admin, "login_csrf": value},
                            follow_redirects=False)
        assert login.status_code == 303
        session_id = client.cookies.get("asyncevents_session")
        assert session_id and session_id != admin
        pages = [client.get(p) for p in ("/console/dashboard", "/console/subscriptions",
                                         "/console/deliveries", "/docs")]
        rows = _table_text(app.settings.database_url, "asyncevents_console_session")
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', pages[1].text).group(1)  # type: ignore[union-attr]
        refused = [client.get("/v1/subscriptions", headers={"Authorization": f"Bearer {w}"})
                   for w in wrong]
        assert [r.status_code for r in refused] == [401] * 10 + [429]  # throttled, logged
        logout = client.post("/console/logout", data={"csrf": csrf}, follow_redirects=False)
        answers = [form, login, *pages, *refused, logout]
        bodies = [r.text for r in answers]
        headers = [str(r.headers) for r in answers]  # the login's Set-Cookie has the id
    finally:
        client.close()
        app.close()
    logs = capsys.readouterr()
    assert "authentication failures throttled" in logs.out + logs.err
    for text in [*bodies, logs.out, logs.err, rows]:
        assert admin not in text and session_id not in text, text[:2000]
        assert not any(w in text for w in wrong), text[:2000]
    for text in headers:
        assert admin not in text and not any(w in text for w in wrong), text
    assert rows  # the session was stored: by the hash of its id
