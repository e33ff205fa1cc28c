"""The outbox never stalls the application: with the broker down, ``publish(...,
connection=conn)`` commits at once and its events wait in the outbox for a worker's sweep
(the relay after the commit makes one quick try: 0.1 s to connect, no retry loop).

Before, kombu's connection retries held every such commit about 10 s.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from structlog.testing import capture_logs

from asyncevents.core.app import App
from asyncevents.core.settings import Settings
from asyncevents.core.transport.kombubase import KombuTransport
from tests.helpers import delete_amqp_queues
from tests.proxy import Proxy

OUTBOX_TABLE = "asyncevents_outbox"


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port where the connection is accepted (by the kernel) but nothing ever answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield int(listener.getsockname()[1])


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _commit_times(app: App, engine: sa.Engine, count: int) -> list[float]:
    """Seconds each of ``count`` transactions publishing one event took, commit included."""
    times = []
    for n in range(count):
        began = time.monotonic()
        with engine.begin() as conn:
            conn.execute(sa.text("SELECT 1"))
            app.publish("sales.order.created", {"n": n}, connection=conn)
        times.append(time.monotonic() - began)
    return times


def _outbox_rows(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {OUTBOX_TABLE}")).scalar_one())


@pytest.mark.parametrize("broker", ["refused", "silent"])
def test_a_broker_that_is_down_costs_a_commit_no_wait(
        broker: str, make_settings: Callable[..., Settings], tmp_path: Path,
        request: pytest.FixtureRequest) -> None:
    port = request.getfixturevalue("silent_port") if broker == "silent" else _closed_port()
    app_url = f"sqlite:///{tmp_path / 'app.db'}"
    app = App(make_settings(transport_url=f"amqp://guest:guest@127.0.0.1:{port}//",
                            outbox_url=app_url))
    engine = sa.create_engine(app_url)
    try:
        _commit_times(app, engine, 1)  # the outbox table is created: not what is measured
        with capture_logs() as logs:
            times = _commit_times(app, engine, 5)
        assert _outbox_rows(engine) == 6  # every event waits for the sweep
    finally:
        app.close()
        engine.dispose()
    # 0.1 s to connect at most, then the outbox; before, about 10 s each.
    assert max(times) < 0.5, times
    assert not [e for e in logs if "outbox relay failed" in e["event"]]  # told at the first


def test_the_relay_outage_is_two_lines(amqp_url: str, make_settings: Callable[..., Settings],
                                       tmp_path: Path) -> None:
    app_url = f"sqlite:///{tmp_path / 'app.db'}"
    with Proxy(5672) as proxy:
        settings = make_settings(transport_url=amqp_url.replace(":5672/", f":{proxy.port}/"),
                                 outbox_url=app_url)
        app = App(settings)
        engine = sa.create_engine(app_url)
        try:
            with capture_logs() as logs:
                _commit_times(app, engine, 1)  # relayed
                assert _outbox_rows(engine) == 0
                proxy.cut()
                times = _commit_times(app, engine, 3)  # left in the outbox
                assert _outbox_rows(engine) == 3
                proxy.restore()
                _commit_times(app, engine, 1)  # relayed again (the 3 wait for the sweep)
                assert _outbox_rows(engine) == 3
        finally:
            app.close()
            engine.dispose()
            delete_amqp_queues(settings)
    assert max(times) < 0.5, times
    events = [e["event"] for e in logs if "outbox relay" in e["event"]]
    assert len(events) == 2, events
    assert events[0].startswith("outbox relay failed; a worker's sweep will send the events (")
    assert events[1].startswith("outbox relay works again after ")
    assert events[1].endswith(" s (3 events left for the sweep)")


def test_failing_fast_is_for_the_block_only(make_settings: Callable[..., Settings]) -> None:
    app = App(make_settings(transport_url="amqp://guest:guest@127.0.0.1:1//"))
    transport = app.transport
    assert isinstance(transport, KombuTransport)
    try:
        with transport.fail_fast(0.1):
            assert transport.fail_fast_timeout() == 0.1
            assert transport.connect().connect_timeout == 0.1
        assert transport.fail_fast_timeout() is None
        assert transport.connect().connect_timeout == 5  # kombu's default
    finally:
        app.close()


def test_a_sweep_outage_is_two_lines(pg_url: str, make_settings: Callable[..., Settings]) -> None:
    with Proxy(5432) as proxy:
        app = App(make_settings(outbox_url=pg_url.replace(":5432/", f":{proxy.port}/")))
        try:
            with capture_logs() as logs:
                assert app.outbox.sweep_or_log() == 0  # no outbox table yet: nothing to do
                proxy.cut()
                for _ in range(3):  # a worker's sweeps during the outage
                    assert app.outbox.sweep_or_log() == 0
                proxy.restore()
                assert app.outbox.sweep_or_log() == 0
        finally:
            app.close()
    events = [e["event"] for e in logs if "outbox sweep" in e["event"]]
    assert len(events) == 2, events
    assert events[0].startswith("outbox sweep failed; the worker tries again (")
    assert events[1].startswith("outbox sweep works again after ")
    assert events[1].endswith(" s (3 failed sweeps)")
