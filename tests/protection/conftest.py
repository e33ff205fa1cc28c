"""Fixtures shared by the receiver-protection tests: a receiver, an app on either store,
a forwarding proxy."""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from asyncevents.core.app import App
from asyncevents.core.settings import Settings
from tests.protection.helpers import Forwarder


@pytest.fixture
def server() -> Iterator[HTTPServer]:
    """A real, threaded HTTP receiver on 127.0.0.1 (a slow handler blocks nobody)."""
    httpd = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    httpd.start()
    yield httpd
    httpd.stop()


@pytest.fixture
def app_on(make_settings: Callable[..., Settings],
           request: pytest.FixtureRequest) -> Callable[..., App]:
    """``app_on("sqlite" | "postgresql", **settings)``: an App whose store and queue
    are the embedded SQLite default, or a fresh PostgreSQL database (``sqla+`` queue)."""

    def build(store: str, **overrides: Any) -> App:
        if store == "postgresql":
            pg = request.getfixturevalue("pg_migrated_url")  # as 'asyncevents migrate' leaves it
            overrides.update(database_url=pg, transport_url=f"sqla+{pg}")
        return App(make_settings(**overrides))

    return build


@pytest.fixture
def proxy() -> Iterator[tuple[str, list[tuple[str, str, dict[str, str]]]]]:
    """A forwarding HTTP proxy on 127.0.0.1: its URL and what it forwarded."""
    srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Forwarder)
    srv.daemon_threads = True
    srv.seen = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", srv.seen  # type: ignore[attr-defined]
    srv.shutdown()
    srv.server_close()
