"""Fixtures for the sink tests: settings isolated from the machine, a local HTTP server."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from asyncevents.core.settings import Settings


@pytest.fixture
def make_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[..., Settings]:
    """Settings built from keyword arguments only: no asyncevents.toml, no ASYNCEVENTS_* env."""
    for name in list(os.environ):
        if name.startswith("ASYNCEVENTS_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)

    def build(**overrides: Any) -> Settings:
        overrides.setdefault("allowed_networks", ["127.0.0.0/8"])
        return Settings(**overrides)

    return build


@pytest.fixture(scope="module")
def _running_server() -> Iterator[HTTPServer]:
    # Stopping a werkzeug server takes half a second: one per module.
    httpd = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    httpd.start()
    yield httpd
    httpd.stop()


@pytest.fixture
def server(_running_server: HTTPServer) -> Iterator[HTTPServer]:
    """A real HTTP server on 127.0.0.1 (threaded, so a slow handler blocks nobody)."""
    _running_server.clear()
    yield _running_server
    _running_server.clear()
