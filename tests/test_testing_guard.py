"""The contract kit checks the address guard (issue 23, item 10): a sink whose
recipients name a host refuses private addresses unless ASYNCEVENTS_ALLOWED_NETWORKS
opens them, on subscribe and when it connects. A sink written without the guard fails
the kit; one written from the guide passes it."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, ClassVar
from urllib.parse import urlsplit

import pytest
from pytest_httpserver import HTTPServer

from asyncevents import (
    DeliveryRequest,
    DeliveryResult,
    InvalidRecipient,
    Settings,
    check_address,
    cloudevent,
    guarded_addresses,
)
from asyncevents.sinks.http import HttpSink
from asyncevents.testing import PRIVATE_HOSTS, FailureCase, SinkContract, check_sink_contract

LOOPBACK = Settings(allowed_networks=["127.0.0.0/8"])


class Lines:
    """A TCP server on 127.0.0.1 keeping every line it is sent."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        with conn, conn.makefile("r") as lines:
            self.lines.extend(line.strip() for line in lines)

    def received(self, request: DeliveryRequest) -> None:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if any(json.loads(line)["id"] == request.event_id for line in list(self.lines)):
                return
            time.sleep(0.01)
        raise AssertionError("not received")

    def close(self) -> None:
        self._sock.close()


@pytest.fixture
def lines() -> Iterator[Lines]:
    server = Lines()
    yield server
    server.close()


class LineSink:
    """Sends each CloudEvent as one JSON line to ``tcp://host:port/name``; ``guard`` says
    where it applies the address guard (none, only on subscribe, or as the guide says)."""

    name: ClassVar[str] = "tcpline"
    guard: ClassVar[str] = "guide"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def validate_recipient(self, recipient: str) -> None:
        url = urlsplit(recipient)
        if url.scheme != "tcp" or not url.hostname or not url.port:
            raise InvalidRecipient("expected tcp://host:port/name")
        if self.guard != "none":
            check_address(recipient, self.settings)

    def deliver(self, request: DeliveryRequest) -> DeliveryResult:
        url = urlsplit(request.recipient)
        assert url.hostname is not None and url.port is not None
        try:
            if self.guard == "guide":
                addresses = guarded_addresses(url.hostname, url.port, self.settings)
            else:
                addresses = [(url.hostname, url.port)]  # type: ignore[list-item]
        except InvalidRecipient as exc:
            return DeliveryResult.failed(f"recipient address refused: {exc}", retryable=False)
        try:
            with socket.create_connection(addresses[0], timeout=2) as conn:
                conn.sendall(json.dumps(cloudevent(request)).encode() + b"\n")
        except OSError as exc:
            return DeliveryResult.failed(f"cannot connect: {exc}")
        return DeliveryResult.ok()

    def close(self) -> None:
        pass


def _sink(guard: str) -> Callable[[Settings], Any]:
    return type(f"LineSink_{guard}", (LineSink,), {"guard": guard})


def test_a_sink_written_from_the_guide_passes(lines: Lines) -> None:
    SinkContract(factory=_sink("guide"), settings=LOOPBACK,
                 good_recipient=f"tcp://127.0.0.1:{lines.port}/orders",
                 bad_recipients=["", "http://x/y"], received=lines.received).check_all()


def test_a_sink_without_the_guard_fails_the_kit(lines: Lines) -> None:
    with pytest.raises(AssertionError) as failed:
        SinkContract(factory=_sink("none"), settings=LOOPBACK,
                     good_recipient=f"tcp://127.0.0.1:{lines.port}/orders",
                     received=lines.received).check_all()
    message = str(failed.value)
    assert f"tcp://127.0.0.1:{lines.port}/orders" in message and "was accepted" in message
    assert "asyncevents.check_address" in message


def test_a_guard_on_subscribe_only_fails_the_kit(lines: Lines) -> None:
    with pytest.raises(AssertionError, match="connects without the guard"):
        check_sink_contract(_sink("subscribe-only"), LOOPBACK,
                            good_recipient=f"tcp://127.0.0.1:{lines.port}/orders",
                            received=lines.received)


def test_each_private_host_is_probed(lines: Lines) -> None:
    seen: list[str] = []

    class Spy(LineSink):
        def validate_recipient(self, recipient: str) -> None:
            if not self.settings.allowed_networks:
                seen.append(recipient)
            super().validate_recipient(recipient)

    SinkContract(factory=Spy, settings=LOOPBACK,
                 good_recipient=f"tcp://127.0.0.1:{lines.port}/o").check_address_guard()
    assert seen[:4] == [f"tcp://{h}:{lines.port}/o" for h in PRIVATE_HOSTS]
    assert PRIVATE_HOSTS == ("127.0.0.1", "10.0.0.1", "169.254.169.254", "localhost")


def test_a_template_for_recipients_that_are_not_urls(lines: Lines) -> None:
    class HostPort(LineSink):
        """Recipients ``host:port`` (no scheme)."""

        def validate_recipient(self, recipient: str) -> None:
            super().validate_recipient(f"tcp://{recipient}/x")

        def deliver(self, request: DeliveryRequest) -> DeliveryResult:
            from dataclasses import replace

            return super().deliver(replace(request, recipient=f"tcp://{request.recipient}/x"))

    template = f"{{host}}:{lines.port}"
    SinkContract(factory=HostPort, settings=LOOPBACK, good_recipient=f"127.0.0.1:{lines.port}",
                 address_template=template, received=lines.received).check_all()

    class Unguarded(HostPort):
        guard = "none"

    with pytest.raises(AssertionError, match="was accepted"):
        SinkContract(factory=Unguarded, settings=LOOPBACK,
                     good_recipient=f"127.0.0.1:{lines.port}",
                     address_template=template).check_address_guard()


def test_a_sink_that_never_dials_its_recipients_host_may_say_so(lines: Lines) -> None:
    # An SQS queue URL names a host the sink never connects to (boto3 sends to its endpoint).
    SinkContract(factory=_sink("none"), settings=LOOPBACK,
                 good_recipient=f"tcp://127.0.0.1:{lines.port}/orders",
                 dials_recipient_host=False).check_address_guard()


def test_the_http_sink_passes_the_guard_check() -> None:
    server = HTTPServer(host="127.0.0.1", port=0)
    server.start()
    try:
        server.expect_request("/hook", method="POST").respond_with_data("ok")
        settings = Settings(allowed_networks=["127.0.0.0/8"], http_timeout=3,
                            http_connect_timeout=2)
        SinkContract(factory=HttpSink, settings=settings,
                     good_recipient=server.url_for("/hook"),
                     failures=[FailureCase("no server", retryable=True,
                                           recipient="http://127.0.0.1:9/x")]
                     ).check_address_guard()
    finally:
        server.stop()
