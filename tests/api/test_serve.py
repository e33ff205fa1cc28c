"""``asyncevents serve --worker`` as a user runs it: a process, stopped with SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from pytest_httpserver import HTTPServer

from asyncevents.cli import main
from tests.helpers import Recorder, free_port, wait_until

pytestmark = pytest.mark.slow


def test_serve_with_worker_delivers_and_stops_on_sigterm(
        tmp_path: Path, httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    env = {**os.environ,
           "ASYNCEVENTS_DATABASE_URL": f"sqlite:///{tmp_path / 'store.db'}",
           "ASYNCEVENTS_TRANSPORT_URL": f"sqla+sqlite:///{tmp_path / 'queue.db'}",
           "ASYNCEVENTS_ALLOWED_NETWORKS": "127.0.0.0/8",
           "ASYNCEVENTS_STRICT_EVENTS": "false",
           "ASYNCEVENTS_POLLING_INTERVAL": "0.05"}
    for key, value in env.items():
        if key.startswith("ASYNCEVENTS_"):
            monkeypatch.setenv(key, value)
    assert main(["tokens", "create", "ops", "--scope", "admin"]) == 0
    secret = capsys.readouterr().out.strip()
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "asyncevents", "serve", "--port", str(port), "--worker"],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        def up() -> bool:
            try:
                return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, timeout=30)
        recorder = Recorder(httpserver)
        auth = {"Authorization": f"Bearer {secret}"}
        created = httpx.post(f"{base}/v1/subscriptions", headers=auth, json={
            "event_name": "a.*", "recipient": recorder.route("/hook"),
            "verification_token": "whsec_c2VjcmV0"})
        assert created.status_code == 201, created.text
        published = httpx.post(f"{base}/v1/events", headers=auth,
                               json={"name": "a.b", "data": {"x": 1}})
        assert published.status_code == 202
        wait_until(lambda: len(recorder.hits) == 1)
        assert recorder.hits[0].json["id"] == published.json()["event_id"]
        assert httpx.get(f"{base}/v1/deliveries", headers=auth).json()["items"][0]["status"] \
            in ("pending", "delivered")  # the attempt may still be recording
    finally:
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    assert time.monotonic() - started < 30
    assert "worker stopped" in output and secret not in output
