"""Headers that break the exchange are refused at create time (issue 23, item 2).

``Expect: 100-continue`` made the worker's HTTP client wait for an interim
answer many receivers never send, for ever; hop-by-hop headers belong to the
HTTP client; a value with control characters fails every attempt and a
non-ASCII one failed on the synchronous client. One rule set refuses them all
(Python, REST, CLI); a row stored before the rules did is still sent safely.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from asyncevents.core.settings import Settings
from asyncevents.core.sink import DeliveryRequest, DeliveryResult
from asyncevents.errors import ConfigError
from asyncevents.sinks.http import HttpSink
from tests.api.conftest import TOKEN, Api, _keep_logging_config, make_api  # noqa: F401
from tests.helpers import run_cli

REFUSED_NAMES = ["Expect", "expect", "Connection", "Keep-Alive", "TE", "Trailer", "Upgrade",
                 "Transfer-Encoding", "Proxy-Authenticate", "Proxy-Authorization"]
REFUSED_VALUES = ["a\x0bb", "a\x0cb", "\x01", "ab\x7f", "a\x00b", "one\r\ntwo", "café"]


@pytest.fixture
def api(make_api: Callable[..., Api]) -> Api:  # noqa: F811 (the imported fixture)
    return make_api()


@pytest.mark.parametrize("name", REFUSED_NAMES)
def test_expect_and_hop_by_hop_headers_are_refused(api: Api, name: str) -> None:
    value = "100-continue" if name.lower() == "expect" else "x"
    with pytest.raises(ConfigError) as refused:
        api.app.subscribe("shop.order.created", "http://127.0.0.1:9/hook", token=TOKEN,
                          headers={name: value})
    assert refused.value.field == "headers"
    assert repr(name) in str(refused.value) and "hop-by-hop" in str(refused.value)
    body = {"event_name": "shop.order.created", "recipient": "http://127.0.0.1:9/hook",
            "verification_token": TOKEN, "headers": {name: value}}
    rest = api.client.post("/v1/subscriptions", json=body, headers=api.auth())
    assert rest.status_code == 422, rest.text
    assert rest.json()["field"].startswith("headers")
    assert api.app.store.list_subscriptions() == []


@pytest.mark.parametrize("value", REFUSED_VALUES)
def test_header_values_must_be_printable_ascii(api: Api, value: str) -> None:
    secret = f"s3cret{value}"
    with pytest.raises(ConfigError) as refused:
        api.app.subscribe("shop.order.created", "http://127.0.0.1:9/hook", token=TOKEN,
                          headers={"Authorization": secret})
    message = str(refused.value)
    assert refused.value.field == "headers" and "'Authorization'" in message
    assert "printable ASCII" in message and "position" in message
    assert "s3cret" not in message  # the value may be a secret: never quoted
    sub = api.subscription()
    patched = api.client.patch(f"/v1/subscriptions/{sub.id}", headers=api.auth(),
                               json={"headers": {"X-Tenant": value}})
    assert patched.status_code == 422, patched.text
    assert api.app.store.get_subscription(sub.id) == sub  # untouched


def test_tabs_spaces_and_punctuation_pass(api: Api) -> None:
    sub = api.app.subscribe("shop.order.created", "http://127.0.0.1:9/hook", token=TOKEN,
                            headers={"X-List": "a,\tb; q=0.5 ~!#$%&'*+-.^_`|"})
    assert sub.headers == {"X-List": "a,\tb; q=0.5 ~!#$%&'*+-.^_`|"}


def test_the_cli_refuses_expect_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "asyncevents.toml").write_text(
        'allowed_networks = ["127.0.0.0/8"]\nstrict_events = false\n')
    done = run_cli("subscribe", "shop.order.created", "http://127.0.0.1:9/hook", "--token",
                   TOKEN, "--header", "Expect: 100-continue", cwd=tmp_path)
    assert done.returncode != 0
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: --header:") and "'Expect'" in line
    listed = run_cli("subscriptions", "list", "--json", cwd=tmp_path)
    assert json.loads(listed.stdout) == []


class NoContinue:
    """An HTTP/1.1 receiver that never sends ``100 Continue``: it waits for the body the
    request's Content-Length announces, then answers 200."""

    def __init__(self) -> None:
        self.headers: list[bytes] = []
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        conn.settimeout(30)
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            self.headers.append(head.lower())
            length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            while len(body) < length:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                body += chunk
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")

    def close(self) -> None:
        self._sock.close()


@pytest.fixture
def no_continue() -> Iterator[NoContinue]:
    server = NoContinue()
    yield server
    server.close()


def _request(url: str, headers: dict[str, str]) -> DeliveryRequest:
    return DeliveryRequest(
        delivery_id=str(uuid.uuid4()), event_id=str(uuid.uuid4()), event_name="shop.x",
        subscription_id="sub-1", recipient=url, token=TOKEN, payload={"id": 1},
        published_at=datetime(2024, 5, 1, tzinfo=UTC), headers=headers)


def _both(sink: HttpSink, request: DeliveryRequest) -> list[DeliveryResult]:
    async def later() -> DeliveryResult:
        try:
            # Bounded here, so that the test fails instead of hanging without the fix.
            return await asyncio.wait_for(sink.deliver_async(request), 5)
        finally:
            await sink.aclose()

    return [sink.deliver(request), asyncio.run(later())]


def test_a_stored_expect_header_is_not_sent(no_continue: NoContinue,
                                            make_settings: Callable[..., Settings]) -> None:
    # A row stored before the rules refused it: both clients leave it out.
    sink = HttpSink(make_settings(http_timeout=2))
    try:
        results = _both(sink, _request(f"http://127.0.0.1:{no_continue.port}/hook",
                                       {"Expect": "100-continue", "X-Tenant": "acme"}))
    finally:
        sink.close()
    assert [r.success for r in results] == [True, True], [r.error for r in results]
    assert all(b"expect" not in head and b"x-tenant: acme" in head
               for head in no_continue.headers)


@pytest.mark.parametrize(("value", "sent"), [("a\x0bb", None), ("café", "café")])
def test_stored_header_values(no_continue: NoContinue, make_settings: Callable[..., Settings],
                              value: str, sent: Any) -> None:
    # A control character fails for good with an error saying what to fix; a non-ASCII
    # value (which an older row may hold) goes out as UTF-8 from both clients.
    sink = HttpSink(make_settings(http_timeout=2))
    try:
        results = _both(sink, _request(f"http://127.0.0.1:{no_continue.port}/hook",
                                       {"X-Note": value}))
    finally:
        sink.close()
    if sent is None:
        assert [r.success or r.retryable for r in results] == [False, False]
        assert all("header 'X-Note'" in (r.error or "") and "U+000B" in (r.error or "")
                   for r in results)
        assert no_continue.headers == []
    else:
        assert [r.success for r in results] == [True, True], [r.error for r in results]
        assert all(f"x-note: {sent}".encode() in head for head in no_continue.headers)
