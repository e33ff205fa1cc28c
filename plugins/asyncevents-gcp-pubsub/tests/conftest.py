"""Fixtures: the local Pub/Sub stand-in (a gRPC Publisher server), no Google credentials
or metadata server reachable, isolated settings."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from publisher_server import PublisherServer

from asyncevents import Settings


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.startswith(("ASYNCEVENTS_", "GOOGLE_", "CLOUDSDK_", "GCE_", "PUBSUB_")) and \
                not key.startswith("ASYNCEVENTS_TEST_"):
            monkeypatch.delenv(key)
    # Never look for credentials on a real machine or a metadata server: only on 127.0.0.1.
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")
    monkeypatch.setenv("GCE_METADATA_IP", "127.0.0.1:9")
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "no-gcloud"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def settings() -> Settings:
    """Core settings: SQLite queue and store in the test's directory."""
    return Settings(strict_events=False, polling_interval=0.05)


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[PublisherServer]:
    """The stand-in, running; ``PUBSUB_EMULATOR_HOST`` points at it."""
    started = PublisherServer().start()
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", started.host)
    yield started
    started.stop()
