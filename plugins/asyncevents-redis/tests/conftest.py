"""Fixtures: the real Redis on 127.0.0.1:6379, a unique stream per test, isolated settings."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from asyncevents import Settings

REDIS_URL = os.environ.get("ASYNCEVENTS_TEST_REDIS", "redis://127.0.0.1:6379/0")


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.startswith("ASYNCEVENTS_") and not key.startswith("ASYNCEVENTS_TEST_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("ASYNCEVENTS_REDIS_URL", REDIS_URL)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def settings() -> Settings:
    """Core settings: SQLite queue and store in the test's directory."""
    return Settings(strict_events=False, polling_interval=0.05)


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    """A client of the real Redis; fails (never skips) when it is down."""
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=2).close()
    except OSError as exc:
        pytest.fail(f"Redis is not reachable on 127.0.0.1:6379 ({exc}); start it")
    conn = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    yield conn
    conn.close()


@pytest.fixture
def stream(client: redis.Redis) -> Iterator[str]:
    """A stream key no other test uses, deleted afterwards."""
    key = f"asyncevents-test:{uuid.uuid4().hex}"
    yield key
    client.delete(key)
