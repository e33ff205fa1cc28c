"""A publish that kombu retries after a reconnect still reaches its queue.

On the SQL transport exchange bindings live in the connection's memory; a
retry on a fresh connection used to route the message nowhere while
``publish()`` returned an event id (found by the disk-full fault).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError

from asyncevents.core.app import App
from asyncevents.core.transport.sql import channel as sqltransport
from asyncevents.errors import TransportError


def _rows(url: str) -> int:
    engine = sa.create_engine(url.removeprefix("sqla+"))
    try:
        with engine.connect() as conn:
            return int(conn.execute(
                sa.text("SELECT count(*) FROM asyncevents_queue_message")).scalar_one())
    finally:
        engine.dispose()


@pytest.fixture
def flaky_put(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """``failures["left"]`` next inserts into the queue table fail like a lost database."""
    failures = {"left": 0}
    original = sqltransport.SqlChannel._put

    def put(self: Any, queue: str, message: dict[str, Any], **kwargs: Any) -> None:
        if failures["left"] > 0:
            failures["left"] -= 1
            raise OperationalError("INSERT", {}, Exception("server closed the connection"))
        original(self, queue, message, **kwargs)

    monkeypatch.setattr(sqltransport.SqlChannel, "_put", put)
    return failures


def test_a_retried_publish_is_not_lost(make_settings: Callable[..., Any],
                                       flaky_put: dict[str, int]) -> None:
    settings = make_settings()
    app = App(settings)
    try:
        app.publish("retry.test", {"n": 0})
        for n in range(1, 4):
            flaky_put["left"] = 1  # the first try fails, kombu reconnects and retries
            app.publish("retry.test", {"n": n})
    finally:
        app.close()
        sqltransport.dispose_engines()
    assert _rows(settings.transport_url) == 4


def test_a_publish_that_keeps_failing_raises(make_settings: Callable[..., Any],
                                             flaky_put: dict[str, int]) -> None:
    settings = make_settings()
    app = App(settings)
    try:
        app.publish("retry.test", {"n": 0})
        flaky_put["left"] = 100
        with pytest.raises(TransportError, match="server closed the connection"):
            app.publish("retry.test", {"n": 1})
    finally:
        app.close()
        sqltransport.dispose_engines()
    assert _rows(settings.transport_url) == 1
