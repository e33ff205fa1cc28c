"""Fixtures: the local Event Grid stand-in over HTTPS, settings that trust its certificate."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from eventgrid_server import TopicServer

from asyncevents import Settings
from asyncevents.testing import TEST_TOKEN


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.startswith(("ASYNCEVENTS_", "AZURE_", "REQUESTS_CA", "SSL_CERT")) and \
                not key.startswith("ASYNCEVENTS_TEST_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def settings() -> Settings:
    """Core settings: SQLite queue and store in the test's directory; the local stand-in
    (127.0.0.1) lets through the address guard."""
    return Settings(strict_events=False, polling_interval=0.05, allowed_networks=["127.0.0.0/8"])


@pytest.fixture
def topic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TopicServer]:
    """The stand-in, whose key is the contract kit's token; the sink's settings trust it."""
    server = TopicServer(tmp_path, key=TEST_TOKEN).start()
    monkeypatch.setenv("ASYNCEVENTS_EVENTGRID_ALLOWED_HOSTS", "127.0.0.1")
    monkeypatch.setenv("ASYNCEVENTS_EVENTGRID_CA_FILE", str(server.cert))
    yield server
    server.stop()
