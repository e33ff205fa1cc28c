from __future__ import annotations

import base64
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from pytest_httpserver import HTTPServer
from standardwebhooks.webhooks import Webhook
from werkzeug import Request, Response

from asyncevents.core.settings import Settings
from asyncevents.core.sink import DeliveryRequest, Sink
from asyncevents.errors import InvalidRecipient
from asyncevents.sinks.http import USER_AGENT, HttpSink, register_sinks, retry_after_seconds
from tests.helpers import AsyncClientOnly, both_http_clients  # noqa: F401

WHSEC = "whsec_" + base64.b64encode(b"a 24 byte signing secret").decode()
RAW_TOKEN = "correct horse battery staple"


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(http_timeout=2.0, http_connect_timeout=1.0)


@pytest.fixture
def sink(settings: Settings) -> Iterator[HttpSink]:
    http = HttpSink(settings)
    yield http
    http.close()


def request_for(url: str, token: str = RAW_TOKEN, **changes: object) -> DeliveryRequest:
    request = DeliveryRequest(
        delivery_id=str(uuid.uuid4()),
        event_id=str(uuid.uuid4()),
        event_name="sales.order.created",
        subscription_id="sub-1",
        recipient=url,
        token=token,
        payload={"id": 42, "customer": {"email": "a@example.com"}},
        published_at=datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
    )
    return replace(request, **changes)  # type: ignore[arg-type]


def received(server: HTTPServer, index: int = 0) -> Request:
    return server.log[index][0]


def test_is_a_sink_registered_as_http(sink: HttpSink) -> None:
    registered: dict[str, object] = {}
    register_sinks(registered.__setitem__)
    assert registered == {"http": HttpSink}
    assert isinstance(sink, Sink)
    assert HttpSink.name == "http"


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_2xx_is_success(server: HTTPServer, sink: HttpSink, status: int) -> None:
    server.expect_request("/hook", method="POST").respond_with_data(
        "" if status == 204 else "thanks", status=status
    )
    result = sink.deliver(request_for(server.url_for("/hook")))
    assert result.success, result.error
    assert result.status_code == status
    assert result.response == ("" if status == 204 else "thanks")
    assert result.error is None


@pytest.mark.parametrize("token", [WHSEC, RAW_TOKEN], ids=["whsec", "raw"])
def test_the_reference_library_verifies_what_the_server_got(
    server: HTTPServer, sink: HttpSink, token: str
) -> None:
    server.expect_request("/hook").respond_with_data("ok")
    request = request_for(server.url_for("/hook"), token=token)
    assert sink.deliver(request).success

    got = received(server)
    # standardwebhooks reads a str secret as whsec_/base64 and bytes as the raw key.
    verifier = Webhook(token if token.startswith("whsec_") else token.encode())
    event = verifier.verify(got.get_data(), dict(got.headers))
    assert event["id"] == request.event_id
    assert got.headers["webhook-id"] == request.delivery_id
    assert abs(int(got.headers["webhook-timestamp"]) - time.time()) < 10
    assert token not in str(dict(got.headers))


def test_body_is_a_structured_cloudevent(server: HTTPServer, sink: HttpSink) -> None:
    server.expect_request("/hook").respond_with_data("ok")
    request = request_for(server.url_for("/hook"))
    sink.deliver(request)

    got = received(server)
    assert got.headers["content-type"] == "application/cloudevents+json"
    assert got.headers["user-agent"] == USER_AGENT
    assert USER_AGENT.startswith("asyncevents/")
    body = got.get_data()
    assert b" " not in body.replace(b"a@example.com", b"")  # compact separators
    event = json.loads(body)
    assert event == {
        "specversion": "1.0",
        "id": request.event_id,
        "source": "asyncevents",
        "type": "sales.order.created",
        "time": "2024-05-01T12:00:00Z",
        "datacontenttype": "application/json",
        "data": {"id": 42, "customer": {"email": "a@example.com"}},
    }


def test_same_webhook_id_on_every_attempt(server: HTTPServer, sink: HttpSink) -> None:
    server.expect_request("/hook").respond_with_data("busy", status=503)
    first = request_for(server.url_for("/hook"))
    sink.deliver(first)
    sink.deliver(replace(first, attempt=2))
    ids = {received(server, i).headers["webhook-id"] for i in range(2)}
    assert ids == {first.delivery_id}


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        (500, True),
        (502, True),
        (503, True),
        (408, True),
        (425, True),
        (429, True),
        (400, False),
        (401, False),
        (404, False),
        (422, False),
    ],
)
def test_failure_classification(
    server: HTTPServer, sink: HttpSink, status: int, retryable: bool
) -> None:
    server.expect_request("/hook").respond_with_data("nope", status=status)
    result = sink.deliver(request_for(server.url_for("/hook")))
    assert not result.success
    assert result.retryable is retryable
    assert result.status_code == status
    assert result.response == "nope"
    assert result.error is not None and str(status) in result.error
    assert not result.disable_subscription
    assert result.retry_after is None


def test_410_disables_the_subscription(server: HTTPServer, sink: HttpSink) -> None:
    server.expect_request("/hook").respond_with_data("gone", status=410)
    result = sink.deliver(request_for(server.url_for("/hook")))
    assert not result.success
    assert not result.retryable
    assert result.disable_subscription
    assert result.status_code == 410


def test_retry_after_seconds_from_the_server(server: HTTPServer, sink: HttpSink) -> None:
    server.expect_request("/hook").respond_with_data(
        "later", status=503, headers={"Retry-After": "2"}
    )
    result = sink.deliver(request_for(server.url_for("/hook")))
    assert result.retryable
    assert result.retry_after == 2


def test_retry_after_http_date_from_the_server(server: HTTPServer, sink: HttpSink) -> None:
    when = datetime.now(UTC) + timedelta(seconds=120)
    server.expect_request("/hook").respond_with_data(
        "slow down", status=429, headers={"Retry-After": format_datetime(when, usegmt=True)}
    )
    result = sink.deliver(request_for(server.url_for("/hook")))
    assert result.retry_after is not None
    assert 110 <= result.retry_after <= 121


def test_retry_after_is_capped(
    server: HTTPServer, make_settings: Callable[..., Settings]
) -> None:
    server.expect_request("/hook").respond_with_data(
        "later", status=503, headers={"Retry-After": "86400"}
    )
    sink = HttpSink(make_settings(max_retry_after=30))
    try:
        assert sink.deliver(request_for(server.url_for("/hook"))).retry_after == 30
    finally:
        sink.close()


NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("2", 2.0),
        (" 7 ", 7.0),
        ("1.5", 1.5),  # not RFC 9110, but harmless to honour
        ("-5", 0.0),
        ("nan", None),
        ("soon", None),
        ("Wed, 01 May 2024 12:01:00 GMT", 60.0),
        ("Wed, 01 May 2024 11:00:00 GMT", 0.0),  # already past: retry now
        ("Wed, 01 May 2024 14:00:00 GMT", 3600.0),  # two hours, capped to one
        ("999999999999", 3600.0),
    ],
)
def test_retry_after_parsing(header: str | None, expected: float | None) -> None:
    assert retry_after_seconds(header, cap=3600, now=NOW) == expected


def test_redirect_is_not_followed(server: HTTPServer, sink: HttpSink) -> None:
    server.expect_request("/hook").respond_with_data(
        "", status=302, headers={"Location": server.url_for("/elsewhere")}
    )
    server.expect_request("/elsewhere").respond_with_data("should not be reached")
    result = sink.deliver(request_for(server.url_for("/hook")))
    assert not result.success
    assert not result.retryable
    assert result.status_code == 302
    assert [entry[0].path for entry in server.log] == ["/hook"]


def test_timeout_is_retryable(server: HTTPServer, make_settings: Callable[..., Settings]) -> None:
    def slow(request: Request) -> Response:
        time.sleep(1.0)
        return Response("late")

    server.expect_request("/slow").respond_with_handler(slow)
    sink = HttpSink(make_settings(http_timeout=0.2, http_connect_timeout=0.2))
    try:
        started = time.monotonic()
        result = sink.deliver(request_for(server.url_for("/slow")))
        assert time.monotonic() - started < 0.9
    finally:
        sink.close()
    assert not result.success
    assert result.retryable
    assert result.error is not None and "timed out" in result.error


def test_connection_refused_is_retryable(sink: HttpSink) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on the port once the probe socket is closed.
    result = sink.deliver(request_for(f"http://127.0.0.1:{port}/hook"))
    assert not result.success
    assert result.retryable
    assert result.status_code is None
    assert result.error is not None and "ConnectError" in result.error


def test_excerpt_is_truncated(server: HTTPServer, make_settings: Callable[..., Settings]) -> None:
    # "é" is two bytes: the 9-byte limit cuts the fifth one in half, and the
    # half character is dropped rather than shown as U+FFFD.
    server.expect_request("/hook").respond_with_data("éééééé" + "x" * 100_000, status=500)
    sink = HttpSink(make_settings(response_excerpt_bytes=9))
    try:
        result = sink.deliver(request_for(server.url_for("/hook")))
    finally:
        sink.close()
    assert result.response == "éééé"


def test_invalid_utf8_is_replaced(server: HTTPServer, sink: HttpSink) -> None:
    server.expect_request("/hook").respond_with_data(b"ok \xff\xfe end")
    assert sink.deliver(request_for(server.url_for("/hook"))).response == "ok \ufffd\ufffd end"


def test_a_huge_body_is_never_read_whole(server: HTTPServer, sink: HttpSink) -> None:
    sent = 0
    done = threading.Event()

    def endless(request: Request) -> Response:
        def chunks() -> Iterator[bytes]:
            nonlocal sent
            try:
                for _ in range(100):  # 100 MB if anyone read it all
                    sent += 1
                    yield b"y" * 1_000_000
            finally:
                done.set()

        return Response(chunks(), status=200)

    server.expect_request("/big").respond_with_handler(endless)
    result = sink.deliver(request_for(server.url_for("/big")))
    assert result.success
    assert result.response == "y" * 1024
    done.wait(5)
    # Socket buffers take a few megabytes before the server notices we left.
    assert sent < 50


def test_gzip_body_is_inflated_only_up_to_the_excerpt(
    server: HTTPServer, sink: HttpSink
) -> None:
    import gzip

    bomb = gzip.compress(b"z" * 50_000_000)  # ~50 KB on the wire
    server.expect_request("/gz").respond_with_data(
        bomb, status=500, headers={"Content-Encoding": "gzip"}
    )
    result = sink.deliver(request_for(server.url_for("/gz")))
    assert result.response == "z" * 1024


def test_errors_never_contain_the_token(server: HTTPServer, sink: HttpSink) -> None:
    token = "s3cr3t-token-value"
    # Every failure path: an HTTP error, a refused address, a refused
    # connection, an unusable token; the recipient URL carries the token
    # too (a user pasting it as userinfo), so anything echoing it is caught.
    server.expect_request("/hook").respond_with_data("bad", status=400)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    results = [
        sink.deliver(request_for(server.url_for("/hook"), token=token)),
        sink.deliver(request_for(f"http://{token}@10.0.0.1/", token=token)),
        sink.deliver(request_for(f"http://{token}@127.0.0.1:{closed_port}/", token=token)),
        sink.deliver(request_for(server.url_for("/hook"), token=f"whsec_{token}!")),
    ]
    for result in results:
        assert not result.success
        assert result.error
        assert token not in result.error


@pytest.mark.parametrize(
    ("url", "retryable"),
    [
        ("http://10.0.0.1/hook", False),
        ("http://169.254.169.254/latest/meta-data/", False),
        ("http://[::1]:8080/", False),
    ],
)
def test_refused_address_at_delivery_is_permanent(
    make_settings: Callable[..., Settings], url: str, retryable: bool
) -> None:
    sink = HttpSink(make_settings(allowed_networks=[]))
    try:
        result = sink.deliver(request_for(url))
    finally:
        sink.close()
    assert not result.success
    assert result.retryable is retryable
    assert result.error is not None and result.error.startswith("recipient address refused:")


def test_rebinding_is_caught_at_delivery(
    server: HTTPServer, make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The name was fine when subscribing; at delivery it resolves to loopback.
    sink = HttpSink(make_settings(allowed_networks=[]))
    answers = {"hooks.test": "93.184.216.34"}

    def getaddrinfo(host: str, *args: object, **kwargs: object) -> list[object]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers[host], 0))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    try:
        sink.validate_recipient("http://hooks.test/")
        answers["hooks.test"] = "127.0.0.1"
        result = sink.deliver(request_for("http://hooks.test/"))
    finally:
        sink.close()
    assert not result.retryable
    assert result.error is not None and "refused" in result.error


def test_unresolvable_name_at_delivery_is_retryable(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    # DNS failing now may be an outage, not a wrong URL.
    def getaddrinfo(*args: object, **kwargs: object) -> list[object]:
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    sink = HttpSink(make_settings())
    try:
        result = sink.deliver(request_for("http://hooks.test/"))
    finally:
        sink.close()
    assert not result.success and result.retryable


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/file", "scheme 'ftp'"),
        ("/relative/path", "no scheme"),
        ("not a url", "no scheme"),
        ("http:///no-host", "no host"),
        ("http://[::1/", "not a valid URL"),
        ("http://example.com:99999/", "port 99999"),  # httpx itself lets this through
        ("", "no scheme"),
        ("http://10.0.0.1/", "allowed_networks"),
        ("http://169.254.169.254/", "allowed_networks"),
        ("http://[::1]/", "allowed_networks"),
        ("http://[::ffff:127.0.0.1]/", "allowed_networks"),  # loopback in IPv6 clothing
        ("http://0x7f.1/", "allowed_networks"),  # inet_aton shorthand for 127.0.0.1
        ("http://localhost/", "allowed_networks"),
    ],
)
def test_validate_recipient_refuses(
    make_settings: Callable[..., Settings], url: str, message: str
) -> None:
    sink = HttpSink(make_settings(allowed_networks=[]))
    try:
        with pytest.raises(InvalidRecipient, match=message) as caught:
            sink.validate_recipient(url)
    finally:
        sink.close()
    assert "\n" not in str(caught.value)


def test_validate_recipient_accepts_allowed_loopback(server: HTTPServer, sink: HttpSink) -> None:
    sink.validate_recipient(f"http://127.0.0.1:{server.port}/hook")
    sink.validate_recipient(f"https://127.0.0.1:{server.port}/hook")


def test_localhost_allowed_by_name(make_settings: Callable[..., Settings]) -> None:
    sink = HttpSink(make_settings(allowed_networks=["localhost"]))
    try:
        sink.validate_recipient("http://localhost:9/")
    finally:
        sink.close()


def test_unusable_whsec_token_is_permanent(server: HTTPServer, sink: HttpSink) -> None:
    server.expect_request("/hook").respond_with_data("ok")
    result = sink.deliver(request_for(server.url_for("/hook"), token="whsec_***"))
    assert not result.success and not result.retryable
    assert server.log == []


def test_concurrent_deliveries_share_one_client(server: HTTPServer, sink: HttpSink) -> None:
    server.expect_request("/hook").respond_with_data("ok")
    results = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(5):
            result = sink.deliver(request_for(server.url_for("/hook")))
            with lock:
                results.append(result.success)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [True] * 40


def test_cookies_a_receiver_sets_are_never_sent_back(server: HTTPServer, sink: HttpSink) -> None:
    # Two subscriptions on one host must not see each other's cookies.
    server.expect_request("/a").respond_with_response(
        Response("ok", headers={"Set-Cookie": "session=secret-of-a; Path=/"}))
    server.expect_request("/b").respond_with_data("ok")
    assert sink.deliver(request_for(server.url_for("/a"))).success
    assert sink.deliver(request_for(server.url_for("/b"))).success
    assert [r.headers.get("cookie") for r, _ in server.log] == [None, None]
    assert [r.headers.get("user-agent") for r, _ in server.log] == [USER_AGENT, USER_AGENT]
