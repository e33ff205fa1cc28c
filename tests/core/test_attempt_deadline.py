"""Every attempt has a total deadline that nothing can extend (issue 23, item 2).

A receiver that accepts the connection and never answers, one that trickles
its answer a byte at a time, a request waiting for a ``100 Continue`` that
never comes, a synchronous sink that never returns: each attempt ends at
``attempt_deadline`` as a retryable failure and its slot is free again. A
synchronous sink's thread cannot be killed: it is counted as stuck, and the
sink threads never grow past twice the slots.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import pytest

from asyncevents.core.app import App
from asyncevents.core.delivery.deliver import call_sink_async
from asyncevents.core.delivery.threads import SinkOverrun, Threads
from asyncevents.core.settings import Settings
from asyncevents.core.sink import DeliveryRequest, DeliveryResult
from asyncevents.core.worker.worker import WorkerLimits
from asyncevents.testing import make_request, sink_plugin
from tests.helpers import inline_plugins


class Silent:
    """A TCP server on 127.0.0.1 that accepts connections, reads, and never answers.

    With ``trickle``, it answers a status line and then one header byte a second, for ever.
    """

    def __init__(self, trickle: bool = False) -> None:
        self.trickle = trickle
        self.accepted = 0
        self._stop = threading.Event()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed
            self.accepted += 1
            threading.Thread(target=self._hold, args=(conn,), daemon=True).start()

    def _hold(self, conn: socket.socket) -> None:
        conn.settimeout(0.2)
        sent_status = False
        with conn:
            while not self._stop.is_set():
                try:
                    if not conn.recv(65536) and not self.trickle:
                        return
                except TimeoutError:
                    pass
                except OSError:
                    return
                if self.trickle:
                    try:
                        conn.sendall(b"x" if sent_status else b"HTTP/1.1 200 OK\r\nX-Slow: ")
                    except OSError:
                        return
                    sent_status = True
                    self._stop.wait(0.8)

    def close(self) -> None:
        self._stop.set()
        self._sock.close()


@pytest.fixture
def silent() -> Iterator[Silent]:
    server = Silent()
    yield server
    server.close()


@pytest.fixture
def trickling() -> Iterator[Silent]:
    server = Silent(trickle=True)
    yield server
    server.close()


def _attempts(app: App) -> list[Any]:
    (delivery,) = app.store.recent_deliveries(limit=10)
    return list(app.store.list_attempts(delivery.id))


@pytest.mark.parametrize("receiver", ["silent", "trickling"])
def test_a_receiver_that_never_answers_ends_each_attempt_at_the_deadline(
        receiver: str, make_settings: Callable[..., Settings],
        request: pytest.FixtureRequest) -> None:
    server: Silent = request.getfixturevalue(receiver)
    # The HTTP timeouts are long: only the attempt's deadline can end these attempts.
    app = App(make_settings(attempt_deadline=1.0, http_timeout=30.0, max_deaths=1,
                            backoff="fixed", backoff_base=0.2))
    try:
        app.subscribe("thing.*", f"http://127.0.0.1:{server.port}/hook", token="a-long-test-token")
        app.publish("thing.done", {"k": 1})
        began = time.monotonic()
        app.run_worker(WorkerLimits(max_idle_time=1, time_limit=30))
        took = time.monotonic() - began
        attempts = _attempts(app)
        (delivery,) = app.store.recent_deliveries(limit=10)
    finally:
        app.close()
    assert server.accepted >= 2
    assert [a.success for a in attempts] == [False, False]
    for attempt in attempts:
        assert "no answer within 1 s" in (attempt.error or ""), attempt.error
        assert 900 <= attempt.duration_ms < 3000, attempt.duration_ms
    assert delivery.status == "dead"  # both attempts used: retried once, as policy says
    assert took < 15


class Stuck:
    """A synchronous sink that blocks until ``release`` is set."""

    name: ClassVar[str] = "stuck"
    release = threading.Event()
    calls = 0

    def __init__(self, settings: Settings) -> None:
        pass

    def validate_recipient(self, recipient: str) -> None:
        pass

    def deliver(self, request: DeliveryRequest) -> DeliveryResult:
        type(self).calls += 1
        self.release.wait(60)
        return DeliveryResult.ok()

    def close(self) -> None:
        pass


def test_a_synchronous_sink_that_never_returns_ends_at_the_deadline(
        make_settings: Callable[..., Settings]) -> None:
    Stuck.release = threading.Event()
    Stuck.calls = 0
    plugins = inline_plugins()
    plugins.register(sink_plugin("stuck", Stuck))
    app = App(make_settings(attempt_deadline=0.5, max_deaths=0), plugins=plugins)
    try:
        for n in range(3):
            app.subscribe("thing.*", f"r{n}", sink="stuck", token="a-long-test-token")
        app.publish("thing.done", {"k": 1})
        began = time.monotonic()
        app.run_worker(WorkerLimits(concurrency=2, max_idle_time=1, time_limit=30))
        took = time.monotonic() - began  # the worker stopped with threads still stuck
        deliveries = app.store.recent_deliveries(limit=10)
        attempts = [a for d in deliveries for a in app.store.list_attempts(d.id)]
    finally:
        Stuck.release.set()
        app.close()
    assert len(attempts) == 3 and not any(a.success for a in attempts)
    assert all("within 0.5 s" in (a.error or "") for a in attempts), [a.error for a in attempts]
    assert all(a.duration_ms < 2500 for a in attempts)
    assert {d.status for d in deliveries} == {"dead"}
    assert Stuck.calls == 3  # two slots, four threads: the third call found a thread
    assert took < 15


def _blocking(release: threading.Event, ran: list[int], n: int) -> int:
    ran.append(n)
    release.wait(30)
    return n


def test_stuck_sink_threads_are_counted_and_bounded() -> None:
    threads = Threads(1)  # one slot: two sink threads at most
    release = threading.Event()
    ran: list[int] = []

    async def scenario() -> list[BaseException | int]:
        return await asyncio.gather(
            *(threads.sink(0.3, _blocking, release, ran, n) for n in range(3)),
            return_exceptions=True)

    before = threading.active_count()
    try:
        outcomes = asyncio.run(scenario())
        assert threading.active_count() - before <= threads.sink_threads == 2
        overruns = [o for o in outcomes if isinstance(o, SinkOverrun)]
        assert len(overruns) == 3
        assert sorted(o.started for o in overruns) == [False, True, True]
        unstarted = next(o for o in overruns if not o.started)
        assert "no sink thread free within 0.3 s (2 stuck" in str(unstarted)
        assert threads.stuck == 2 and sorted(ran) == [0, 1]
    finally:
        release.set()
    deadline = time.monotonic() + 5
    while threads.stuck and time.monotonic() < deadline:
        time.sleep(0.01)
    assert threads.stuck == 0
    time.sleep(0.1)
    assert sorted(ran) == [0, 1]  # the call that found no thread never ran
    assert asyncio.run(threads.sink(1.0, lambda: 42)) == 42  # the threads serve again
    threads.shutdown()


def test_shutdown_does_not_wait_for_ever_on_a_stuck_sink() -> None:
    threads = Threads(1)
    release = threading.Event()
    with pytest.raises(SinkOverrun):
        asyncio.run(threads.sink(0.2, _blocking, release, [], 0))
    began = time.monotonic()
    threads.shutdown()
    assert time.monotonic() - began < 2  # the stuck daemon thread is left behind
    release.set()


class Stubborn:
    """An asynchronous sink that swallows its cancellation and goes on waiting."""

    name: ClassVar[str] = "stubborn"

    async def deliver_async(self, request: DeliveryRequest) -> DeliveryResult:
        end = time.monotonic() + 1.5
        while time.monotonic() < end:
            try:
                await asyncio.sleep(0.05)
            except asyncio.CancelledError:
                continue
        return DeliveryResult.ok()


def test_an_asynchronous_sink_cannot_extend_its_deadline() -> None:
    async def scenario() -> tuple[DeliveryResult, float]:
        began = time.monotonic()
        result = await call_sink_async(Stubborn(), make_request(), deadline=0.3)
        return result, time.monotonic() - began

    result, took = asyncio.run(scenario())
    assert not result.success and result.retryable
    assert "no answer within 0.3 s" in (result.error or "")
    assert took < 1.0


def test_the_deadline_defaults_from_the_http_timeouts() -> None:
    assert Settings().attempt_seconds == 5 + 30 + 25
    assert Settings(http_timeout=5, http_connect_timeout=1).attempt_seconds == 31
    assert Settings(attempt_deadline=7).attempt_seconds == 7
