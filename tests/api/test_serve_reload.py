"""``asyncevents serve`` reloads the event catalog on SIGHUP (issue 23, item 14).

The server keeps running: the API, publishing and subscribing see the new
``[events]`` of asyncevents.toml; a file that does not load is logged and the
catalog in use stays. ``App.reload_catalog`` is what SIGHUP calls.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from asyncevents.cli import main
from asyncevents.core.app import App
from asyncevents.core.settings import EventDefinition
from asyncevents.errors import ConfigError, UnknownEvent
from tests.helpers import free_port, wait_until

pytestmark = pytest.mark.slow

BASE_TOML = ('allowed_networks = ["127.0.0.0/8"]\n'
             'transport_url = "sqla+sqlite:///queue.db"\n'
             '[events."sales.order.created"]\ndescription = "placed"\n')


def _events(base: str, auth: dict[str, str]) -> set[str]:
    answer = httpx.get(f"{base}/v1/events", headers=auth, timeout=5)
    assert answer.status_code == 200, answer.text
    return {e["name"] for e in answer.json()["events"]}


def test_sighup_reloads_the_catalog_of_a_running_server(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "asyncevents.toml").write_text(BASE_TOML)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCEVENTS_")}
    for key in [k for k in os.environ if k.startswith("ASYNCEVENTS_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    assert main(["tokens", "create", "ops", "--scope", "admin"]) == 0
    auth = {"Authorization": f"Bearer {capsys.readouterr().out.strip()}"}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = subprocess.Popen([sys.executable, "-m", "asyncevents", "serve", "--port",
                                str(port)], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        def up() -> bool:
            try:
                return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, timeout=30)
        assert "sales.order.shipped" not in _events(base, auth)
        refused = httpx.post(f"{base}/v1/events", headers=auth,
                             json={"name": "sales.order.shipped", "data": {}})
        assert refused.status_code == 422  # strict: not in the catalog yet

        (tmp_path / "asyncevents.toml").write_text(
            BASE_TOML + '[events."sales.order.shipped"]\ndescription = "on its way"\n')
        process.send_signal(signal.SIGHUP)
        wait_until(lambda: "sales.order.shipped" in _events(base, auth), timeout=15)
        published = httpx.post(f"{base}/v1/events", headers=auth,
                               json={"name": "sales.order.shipped", "data": {"id": 1}})
        assert published.status_code == 202, published.text

        # A file that does not load: logged, and the catalog in use stays.
        (tmp_path / "asyncevents.toml").write_text(BASE_TOML + "[events.\n")
        process.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        assert process.poll() is None  # SIGHUP did not end it
        assert "sales.order.shipped" in _events(base, auth)
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    assert "catalog reloaded" in output
    assert "catalog not reloaded: the one in use stays" in output


def test_reload_catalog_reaches_the_publisher_and_the_dispatchers(
        make_settings: Callable[..., Any]) -> None:
    settings = make_settings(strict_events=True,
                             events={"a.b": EventDefinition(description="first")})
    app = App(settings)
    try:
        publisher, dispatcher = app.publisher, app._engine(concurrency=1).dispatcher
        with pytest.raises(UnknownEvent):
            app.publish("c.d", {})
        reloaded = app.reload_catalog(settings.model_copy(update={"events": {
            "a.b": EventDefinition(description="first"),
            "c.d": EventDefinition(description="second")}}))
        assert app.catalog is reloaded and "c.d" in reloaded.definitions
        assert publisher.catalog is reloaded and dispatcher.catalog is reloaded
        assert app.settings.events.keys() == {"a.b", "c.d"}
        app.publish("c.d", {})  # accepted now

        with pytest.raises(ConfigError, match="resolver"):
            app.reload_catalog(settings.model_copy(update={"events": {
                "e.f": EventDefinition(resolver="no_such_module:nothing")}}))
        assert app.catalog is reloaded and publisher.catalog is reloaded  # unchanged
    finally:
        app.close()
