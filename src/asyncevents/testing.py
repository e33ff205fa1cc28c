"""Helpers for sink authors: a contract test kit and fakes.

A plugin's own tests check that its sink keeps the contract the worker relies
on::

    from asyncevents.testing import FailureCase, SinkContract

    def test_contract(settings):
        SinkContract(
            factory=MySink, settings=settings, good_recipient="queue-1",
            bad_recipients=["", "no spaces allowed"],
            received=lambda request: assert_arrived(request),   # optional
            failures=[FailureCase("queue was deleted", retryable=False, recipient="gone")],
        ).check_all()

A sink whose recipients name a host (``amqp://user@broker/...``, ``host:port``)
must keep deliveries away from private addresses: ``check_address_guard``
points the recipient at loopback, a private network, the cloud metadata
service and ``localhost`` and expects each refused unless
``ASYNCEVENTS_ALLOWED_NETWORKS`` opens it, and expects a delivery to a
private good recipient to fail when it is not opened (the guard applies when
connecting, not only on subscribe). It runs by itself when the good recipient
is a URL with a host; ``address_template`` names where the host goes in other
recipient forms.

Each ``check_*`` method can also be called on its own (one test each). A sink
that also has ``async def deliver_async(request)`` (the worker awaits it on its
event loop instead of calling ``deliver`` in a thread) is checked both ways.
Failures raise ``AssertionError`` with a message saying what broke; the kit
works under pytest or any other runner and does not need pytest itself.

For unit tests of code around sinks: ``make_request()`` builds a
``DeliveryRequest``, ``FakeSink`` records what it is asked to deliver and
answers scripted results, and ``sink_plugin()`` wraps a sink so that
``Plugins.register()`` can install it.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable, Collection, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

from asyncevents.core.delivery.deliver import call_sink, call_sink_async
from asyncevents.core.hookspecs import hookimpl
from asyncevents.core.settings import Settings
from asyncevents.core.sink import DeliveryRequest, DeliveryResult, Sink, SinkFactory
from asyncevents.errors import InvalidRecipient, UnverifiedRecipient

__all__ = [
    "PRIVATE_HOSTS",
    "TEST_TOKEN",
    "FailureCase",
    "FakeSink",
    "SinkContract",
    "attempt",
    "check_sink_contract",
    "make_request",
    "sink_plugin",
]

#: The token ``make_request`` puts in requests; it must never show in an error.
TEST_TOKEN = "whsec_dGVzdCB0b2tlbiBuZXZlciB0byBiZSBzaG93bg=="

#: Where ``check_address_guard`` points a recipient: loopback, a private network, the
#: cloud metadata service, and a name that resolves to loopback.
PRIVATE_HOSTS = ("127.0.0.1", "10.0.0.1", "169.254.169.254", "localhost")
_GUIDE = ("call asyncevents.check_address in validate_recipient and connect to "
          "asyncevents.guarded_addresses (CONTRIBUTING.md, 'Write a sink in 15 minutes')")


def make_request(**overrides: Any) -> DeliveryRequest:
    """A valid ``DeliveryRequest`` with fresh ids; keyword arguments replace fields."""
    request = DeliveryRequest(
        delivery_id=str(uuid.uuid4()),
        event_id=str(uuid.uuid4()),
        event_name="sales.order.created",
        subscription_id=str(uuid.uuid4()),
        recipient="recipient",
        token=TEST_TOKEN,
        payload={"id": 42, "customer": {"email": "a@example.com"}, "note": "größe ✓"},
        published_at=datetime(2026, 2, 1, 12, 0, 0, tzinfo=UTC),
    )
    return replace(request, **overrides)


def attempt(sink: Sink, request: DeliveryRequest) -> DeliveryResult:
    """Call ``sink.deliver`` and turn what it raises into a result, as the worker does."""
    return call_sink(sink, request)


class _Kind:
    """One way the worker calls a sink: ``deliver`` in a thread, or ``deliver_async``.

    The asynchronous kind runs every call on one event loop in a thread of its
    own, as the worker's engine does, and closes the sink's asynchronous
    clients (``aclose``) in that loop.
    """

    def __init__(self, sink: Sink, asynchronous: bool) -> None:
        self.sink = sink
        self.name = "deliver_async" if asynchronous else "deliver"
        self._loop: asyncio.AbstractEventLoop | None = None
        if asynchronous:
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
            self._thread.start()

    def attempt(self, request: DeliveryRequest) -> DeliveryResult:
        if self._loop is None:
            return call_sink(self.sink, request)
        return asyncio.run_coroutine_threadsafe(call_sink_async(self.sink, request),
                                                self._loop).result()

    def close(self) -> None:
        if self._loop is not None:
            closing = getattr(self.sink, "aclose", None)
            if closing is not None:
                asyncio.run_coroutine_threadsafe(closing(), self._loop).result()
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()
            self._loop = None
        self.sink.close()


def _kinds(sink_of: Callable[[], Sink]) -> list[Callable[[], _Kind]]:
    """How the worker may call the sinks ``sink_of`` builds: both ways when it has both."""
    probe = sink_of()
    asynchronous = hasattr(probe, "deliver_async")
    probe.close()
    kinds = [lambda: _Kind(sink_of(), False)]
    if asynchronous:
        kinds.append(lambda: _Kind(sink_of(), True))
    return kinds


@dataclass(frozen=True)
class FailureCase:
    """One way to make a delivery fail, and whether the worker should retry it.

    ``recipient`` is delivered to; ``sink`` builds a differently configured
    sink for the case (for instance one pointed at a closed port), else the
    contract's own sink is used; ``request`` overrides request fields.
    """

    description: str
    retryable: bool
    recipient: str
    sink: Callable[[], Sink] | None = None
    request: dict[str, Any] = field(default_factory=dict)


def _expect(condition: bool, message: str) -> None:
    if not condition:  # not ``assert``: the kit must also work under ``python -O``
        raise AssertionError(message)


@dataclass
class SinkContract:
    """The contract every sink keeps, checked against a real destination.

    ``received(request)``, when given, checks that ``request`` arrived at the
    destination (raising ``AssertionError`` if not); ``concurrency`` threads
    deliver at once in ``check_concurrent_delivery``. ``address_template`` is a
    recipient with ``{host}`` where the host goes, for ``check_address_guard``
    (by default the good recipient with its host replaced, when it is a URL
    with a host); ``dials_recipient_host=False`` says the sink never connects to
    the host its recipients name (an SQS queue URL: requests go to the
    configured endpoint), and skips that check.
    """

    factory: SinkFactory
    settings: Settings
    good_recipient: str
    bad_recipients: Sequence[str] = ()
    received: Callable[[DeliveryRequest], None] | None = None
    failures: Sequence[FailureCase] = ()
    concurrency: int = 8
    address_template: str | None = None
    dials_recipient_host: bool = True

    def build(self) -> Sink:
        """A new sink from the factory, checked to look like a sink."""
        sink = self.factory(self.settings)
        _expect(isinstance(sink, Sink), f"{sink!r} lacks validate_recipient, deliver or close")
        name = getattr(type(sink), "name", None)
        _expect(isinstance(name, str) and bool(name), "a sink class needs a non-empty `name`")
        return sink

    def check_all(self) -> None:
        """Every check, in order."""
        self.check_recipients()
        self.check_address_guard()
        self.check_delivers()
        self.check_concurrent_delivery()
        self.check_failures()
        self.check_closes_cleanly()

    def check_recipients(self) -> None:
        """The good recipient passes; each bad one raises ``InvalidRecipient`` (nothing else)."""
        sink = self.build()
        try:
            try:
                sink.validate_recipient(self.good_recipient)
            except InvalidRecipient as exc:
                raise AssertionError(
                    f"good recipient {self.good_recipient!r} refused: {exc}") from exc
            for bad in self.bad_recipients:
                try:
                    sink.validate_recipient(bad)
                except InvalidRecipient as exc:
                    _expect(bool(str(exc)), f"refusing {bad!r} must say why")
                    continue
                except Exception as exc:
                    raise AssertionError(
                        f"bad recipient {bad!r} raised {type(exc).__name__}, "
                        "not InvalidRecipient") from exc
                raise AssertionError(f"bad recipient {bad!r} was accepted")
        finally:
            sink.close()

    def check_address_guard(self) -> None:
        """Private addresses are refused unless ``allowed_networks`` opens them.

        With ``allowed_networks`` empty, the recipient pointed at each of
        :data:`PRIVATE_HOSTS` raises ``InvalidRecipient``; and when the good
        recipient is refused there too (a local test destination), delivering
        to it fails without a retry: the guard applies when the sink connects,
        not only when a subscription is made. Nothing to check for a sink whose
        recipients name no host.
        """
        template = self.address_template or _host_template(self.good_recipient)
        if template is None or not self.dials_recipient_host:
            return
        _expect("{host}" in template, f"address_template {template!r} has no {{host}}")
        closed = self.settings.model_copy(update={"allowed_networks": []})
        sink = self.factory(closed)
        try:
            for host in PRIVATE_HOSTS:
                recipient = template.replace("{host}", host)
                try:
                    sink.validate_recipient(recipient)
                except UnverifiedRecipient as exc:
                    raise AssertionError(
                        f"{recipient!r} was only unverified ({exc}), not refused") from exc
                except InvalidRecipient:
                    continue
                except Exception as exc:
                    raise AssertionError(f"{recipient!r} raised {type(exc).__name__}, "
                                         "not InvalidRecipient") from exc
                raise AssertionError(
                    f"{recipient!r} was accepted although ASYNCEVENTS_ALLOWED_NETWORKS is "
                    f"empty: a sink whose recipients name a host must refuse private "
                    f"addresses; {_GUIDE}")
            try:
                sink.validate_recipient(self.good_recipient)
                private = False
            except UnverifiedRecipient:
                private = False
            except InvalidRecipient:
                private = True
        finally:
            sink.close()
        if not private:
            return  # a public destination: nothing the guard would stop
        for kind_of in _kinds(lambda: self.factory(closed)):
            kind = kind_of()
            try:
                request = make_request(recipient=self.good_recipient)
                result = kind.attempt(request)
            finally:
                kind.close()
            _expect(not result.success,
                    f"{kind.name}: delivered to {self.good_recipient!r} although its address is "
                    f"not allowed: the sink connects without the guard; {_GUIDE}")
            _expect(not result.retryable,
                    f"{kind.name}: a refused address must fail without a retry "
                    f"(error: {result.error})")
            _expect(request.token not in f"{result.error} {result.response}",
                    f"{kind.name}: the subscription's token leaked into the result")

    def check_delivers(self) -> None:
        """One delivery to the good recipient succeeds (and arrives, if ``received`` is set).

        Like every delivery check, through ``deliver`` and, when the sink has
        it, through ``deliver_async`` too.
        """
        for kind_of in _kinds(self.build):
            kind = kind_of()
            try:
                request = make_request(recipient=self.good_recipient)
                result = kind.attempt(request)
                _expect(result.success, f"{kind.name}: delivery failed: {result.error}")
                if self.received is not None:
                    self.received(request)
            finally:
                kind.close()

    def check_concurrent_delivery(self) -> None:
        """One sink instance delivers ``concurrency`` requests at once, each on its own.

        ``deliver`` from as many threads; ``deliver_async`` as many coroutines
        on one event loop (started from as many threads).
        """
        for kind_of in _kinds(self.build):
            kind = kind_of()
            try:
                requests = [make_request(recipient=self.good_recipient,
                                         event_name=f"contract.e{i}")
                            for i in range(self.concurrency)]
                with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
                    results = list(pool.map(kind.attempt, requests))
                failed = [r.error for r in results if not r.success]
                _expect(not failed, f"{kind.name}: {len(failed)} of {len(results)} concurrent "
                                    f"deliveries failed: {failed[:3]}")
                if self.received is not None:
                    for request in requests:
                        self.received(request)
            finally:
                kind.close()

    def check_failures(self) -> None:
        """Each ``FailureCase`` fails, retryable or not as stated, with an error that hides
        the subscription's token."""
        for case in self.failures:
            for kind_of in _kinds(case.sink if case.sink is not None else self.build):
                kind = kind_of()
                try:
                    request = make_request(recipient=case.recipient, **case.request)
                    result = kind.attempt(request)
                finally:
                    kind.close()
                what = case.description + (" (deliver_async)" if kind.name != "deliver" else "")
                _expect(not result.success, f"{what}: the delivery succeeded")
                _expect(result.retryable == case.retryable,
                        f"{what}: retryable={result.retryable}, expected "
                        f"{case.retryable} (error: {result.error})")
                _expect(bool(result.error), f"{what}: a failure must carry an error")
                _expect(request.token not in f"{result.error} {result.response}",
                        f"{what}: the subscription's token leaked into the result")

    def check_closes_cleanly(self) -> None:
        """``close()`` works after use, and a second ``close()`` does no harm."""
        for kind_of in _kinds(self.build):
            kind = kind_of()
            kind.sink.validate_recipient(self.good_recipient)
            kind.attempt(make_request(recipient=self.good_recipient))
            kind.close()
            kind.sink.close()


def check_sink_contract(factory: SinkFactory, settings: Settings, *, good_recipient: str,
                        bad_recipients: Sequence[str] = (),
                        received: Callable[[DeliveryRequest], None] | None = None,
                        failures: Sequence[FailureCase] = (),
                        address_template: str | None = None,
                        dials_recipient_host: bool = True) -> None:
    """Run every check of ``SinkContract`` at once."""
    SinkContract(factory, settings, good_recipient, bad_recipients, received, failures,
                 address_template=address_template,
                 dials_recipient_host=dials_recipient_host).check_all()


def _host_template(recipient: str) -> str | None:
    """``recipient`` with ``{host}`` for its host, when it is a URL with a host."""
    try:
        parts = urlsplit(recipient.strip())
        port = parts.port
    except ValueError:
        return None
    if not parts.scheme or not parts.hostname:
        return None
    userinfo, at, _ = parts.netloc.rpartition("@")
    netloc = f"{userinfo}{at}{{host}}" + (f":{port}" if port is not None else "")
    return urlunsplit(parts._replace(netloc=netloc))


class FakeSink:
    """A sink for unit tests: records requests and answers scripted results.

    Each ``deliver`` takes the next scripted item (a ``DeliveryResult`` is
    returned, an exception raised); once the script is empty it answers
    ``DeliveryResult.ok()``. Recipients in ``invalid`` (and the empty string)
    are refused. Thread-safe.
    """

    name: ClassVar[str] = "fake"

    def __init__(self, settings: Settings | None = None, *,
                 results: Iterable[DeliveryResult | BaseException] = (),
                 invalid: Collection[str] = ()) -> None:
        self.settings = settings
        self.requests: list[DeliveryRequest] = []
        self.close_calls = 0
        self._script: list[DeliveryResult | BaseException] = list(results)
        self._invalid = frozenset(invalid)
        self._lock = threading.Lock()

    def script(self, *results: DeliveryResult | BaseException) -> None:
        """Queue more answers for the next deliveries."""
        with self._lock:
            self._script.extend(results)

    def validate_recipient(self, recipient: str) -> None:
        """Refuse the empty recipient and the ones listed in ``invalid``."""
        if not recipient or recipient in self._invalid:
            raise InvalidRecipient(f"the fake sink refuses {recipient!r}")

    def deliver(self, request: DeliveryRequest) -> DeliveryResult:
        """Record ``request``; answer (or raise) the next scripted item."""
        with self._lock:
            self.requests.append(request)
            answer = self._script.pop(0) if self._script else DeliveryResult.ok()
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def close(self) -> None:
        """Count the call."""
        with self._lock:
            self.close_calls += 1


def sink_plugin(name: str, factory: SinkFactory) -> object:
    """A plugin object registering ``factory`` as sink ``name``, for ``Plugins.register()``.

    To share one ``FakeSink`` between a test and the worker::

        fake = FakeSink()
        plugins.register(sink_plugin("fake", lambda settings: fake))
    """

    class _SinkPlugin:
        @hookimpl
        def register_sinks(self, register: Callable[[str, Any], None]) -> None:
            register(name, factory)

    return _SinkPlugin()
