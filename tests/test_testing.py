"""asyncevents.testing: the contract kit catches broken sinks; the fakes behave as documented."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, ClassVar

import pytest

from asyncevents.core.app import App
from asyncevents.core.settings import Settings
from asyncevents.core.sink import DeliveryRequest, DeliveryResult
from asyncevents.core.worker.worker import WorkerLimits
from asyncevents.errors import InvalidRecipient, PermanentSinkError, RetryableSinkError
from asyncevents.testing import (
    TEST_TOKEN,
    FailureCase,
    FakeSink,
    SinkContract,
    attempt,
    check_sink_contract,
    make_request,
    sink_plugin,
)
from tests.helpers import inline_plugins


class DictSink:
    """A well-behaved sink: 'gone' fails for good, 'busy' for now."""

    name: ClassVar[str] = "dict"
    store: ClassVar[dict[str, list[str]]] = {}

    def __init__(self, settings: Settings) -> None:
        self.closed = 0

    def validate_recipient(self, recipient: str) -> None:
        if not recipient.isidentifier():
            raise InvalidRecipient("an identifier, please")

    def deliver(self, request: DeliveryRequest) -> DeliveryResult:
        if request.recipient == "gone":
            raise PermanentSinkError("gone for good")
        if request.recipient == "busy":
            return DeliveryResult.failed("busy, try later")
        self.store.setdefault(request.recipient, []).append(request.event_id)
        return DeliveryResult.ok()

    def close(self) -> None:
        self.closed += 1


def received(request: DeliveryRequest) -> None:
    if request.event_id not in DictSink.store.get(request.recipient, []):
        raise AssertionError("not delivered")


FAILURES = [FailureCase("gone", retryable=False, recipient="gone"),
            FailureCase("busy", retryable=True, recipient="busy")]


def contract(factory: Callable[[Settings], Any], **changes: Any) -> SinkContract:
    values: dict[str, Any] = {"factory": factory, "settings": Settings(),
                              "good_recipient": "orders", "bad_recipients": ["", "a b"],
                              "received": received, "failures": FAILURES}
    values.update(changes)
    return SinkContract(**values)


def test_a_good_sink_passes() -> None:
    check_sink_contract(DictSink, Settings(), good_recipient="orders", bad_recipients=["a b"],
                        received=received, failures=FAILURES)


def test_accepting_a_bad_recipient_is_caught() -> None:
    with pytest.raises(AssertionError, match="'a b' was accepted"):
        contract(lambda s: FakeSink(s)).check_recipients()


def test_raising_the_wrong_error_on_a_bad_recipient_is_caught() -> None:
    class Sloppy(DictSink):
        def validate_recipient(self, recipient: str) -> None:
            if not recipient:
                raise ValueError("empty")

    with pytest.raises(AssertionError, match="raised ValueError, not InvalidRecipient"):
        contract(Sloppy).check_recipients()


def test_a_wrong_retryable_flag_is_caught() -> None:
    wrong = [FailureCase("busy", retryable=False, recipient="busy")]
    with pytest.raises(AssertionError, match="busy: retryable=True, expected False"):
        contract(DictSink, failures=wrong).check_failures()


def test_a_leaked_token_is_caught() -> None:
    class Leaky(DictSink):
        def deliver(self, request: DeliveryRequest) -> DeliveryResult:
            return DeliveryResult.failed(f"auth failed with {request.token}")

    with pytest.raises(AssertionError, match="token leaked"):
        contract(Leaky, failures=[FAILURES[1]]).check_failures()


def test_a_missed_delivery_is_caught() -> None:
    class Liar(DictSink):
        def deliver(self, request: DeliveryRequest) -> DeliveryResult:
            return DeliveryResult.ok()

    with pytest.raises(AssertionError, match="not delivered"):
        contract(Liar).check_delivers()


def test_a_close_that_fails_twice_is_caught() -> None:
    class Fragile(DictSink):
        def close(self) -> None:
            if self.closed:
                raise RuntimeError("already closed")
            self.closed += 1

    with pytest.raises(RuntimeError, match="already closed"):
        contract(Fragile).check_closes_cleanly()


class AsyncDictSink(DictSink):
    """DictSink with the asynchronous entry point the worker's engine awaits."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.loops: set[int] = set()

    async def deliver_async(self, request: DeliveryRequest) -> DeliveryResult:
        self.loops.add(id(asyncio.get_running_loop()))
        await asyncio.sleep(0)
        return self.deliver(request)

    async def aclose(self) -> None:
        self.closed += 1


def test_an_async_sink_is_checked_both_ways() -> None:
    check_sink_contract(AsyncDictSink, Settings(), good_recipient="orders",
                        bad_recipients=["a b"], received=received, failures=FAILURES)


def test_a_broken_deliver_async_is_caught_even_when_deliver_works() -> None:
    class HalfDone(AsyncDictSink):
        async def deliver_async(self, request: DeliveryRequest) -> DeliveryResult:
            raise RuntimeError("not implemented yet")

    with pytest.raises(AssertionError, match="deliver_async: delivery failed: RuntimeError"):
        contract(HalfDone).check_delivers()
    wrong = [FailureCase("gone", retryable=False, recipient="gone")]
    with pytest.raises(AssertionError, match=r"gone \(deliver_async\): retryable=True"):
        contract(HalfDone, failures=wrong).check_failures()


def test_attempt_maps_exceptions_as_the_worker_does() -> None:
    fake = FakeSink(results=[RetryableSinkError("later", retry_after=3),
                             PermanentSinkError("never"), KeyError("x")])
    first, second, third = (attempt(fake, make_request()) for _ in range(3))
    assert (first.retryable, first.retry_after) == (True, 3)
    assert not second.retryable and second.error == "never"
    assert third.retryable and third.error == "KeyError: 'x'"


def test_make_request() -> None:
    request = make_request(recipient="r", event_name="x.y")
    assert (request.recipient, request.event_name, request.token) == ("r", "x.y", TEST_TOKEN)
    assert make_request().delivery_id != request.delivery_id
    assert TEST_TOKEN not in repr(request)


def test_fake_sink_scripts_and_records() -> None:
    fake = FakeSink(results=[DeliveryResult.failed("first fails")], invalid=["nope"])
    fake.script(DeliveryResult.failed("second fails", retryable=False))
    results = [fake.deliver(make_request(recipient=f"r{i}")) for i in range(3)]
    assert [r.error for r in results] == ["first fails", "second fails", None]
    assert [r.recipient for r in fake.requests] == ["r0", "r1", "r2"]
    with pytest.raises(InvalidRecipient):
        fake.validate_recipient("nope")
    fake.close()
    assert fake.close_calls == 1


def test_sink_plugin_puts_a_fake_behind_the_worker(make_settings: Callable[..., Settings]
                                                   ) -> None:
    fake = FakeSink(results=[DeliveryResult.failed("flaky", retryable=False)])
    plugins = inline_plugins()
    plugins.register(sink_plugin("fake", lambda settings: fake))
    app = App(make_settings(), plugins=plugins)
    app.subscribe("thing.*", "first", sink="fake", token="t")
    app.subscribe("thing.*", "second", sink="fake", token="t")
    app.publish("thing.done", {"k": 1})
    app.run_worker(WorkerLimits(max_idle_time=1, time_limit=30))
    assert sorted(r.recipient for r in fake.requests) == ["first", "second"]
    assert all(r.payload == {"k": 1} for r in fake.requests)
    app.close()
