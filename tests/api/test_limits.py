"""A request body over the limit is refused with a 413 before it is read whole."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from typing import Any

from asyncevents.api.limits import BodyLimit, body_limit
from asyncevents.core.settings import Settings
from tests.api.conftest import Api


def test_the_limit_follows_max_payload_bytes() -> None:
    assert body_limit(Settings(max_payload_bytes=1000)) == 2000 + 64 * 1024


def test_a_declared_length_over_the_limit_is_refused_at_once(
        make_api: Callable[..., Api]) -> None:
    api = make_api(max_payload_bytes=1000)
    limit = body_limit(api.app.settings)
    body = json.dumps({"name": "a.b", "data": {"x": "y" * limit}})
    # Even without a token: nothing of the body is read, so nothing is learnt from it.
    for headers in ({}, api.auth("events:publish")):
        response = api.client.post("/v1/events", content=body,
                                   headers={**headers, "content-type": "application/json"})
        assert response.status_code == 413, response.text
        problem = response.json()
        assert response.headers["content-type"] == "application/problem+json"
        assert problem["status"] == 413 and f"{limit}-byte limit" in problem["detail"]
    # Under the limit, the payload check answers as before (a 422 naming data).
    fits = api.client.post("/v1/events", json={"name": "a.b", "data": {"x": "y" * 2000}},
                           headers=api.auth("events:publish"))
    assert fits.status_code == 422 and fits.json()["field"] == "data"


def test_a_streamed_body_is_cut_off_at_the_limit(make_api: Callable[..., Api]) -> None:
    api = make_api(max_payload_bytes=1000)
    limit = body_limit(api.app.settings)

    def chunks() -> Iterator[bytes]:  # no Content-Length: sent chunked
        yield b'{"name": "a.b", "data": {"x": "'
        for _ in range(limit // 1024 + 2):
            yield b"y" * 1024
        yield b'"}}'

    for path in ("/v1/events", "/v1/subscriptions", "/V1/async_event"):
        response = api.client.post(path, content=chunks(),
                                   headers={**api.auth(), "content-type": "application/json"})
        assert response.status_code == 413, (path, response.text)
    assert api.app.store.list_subscriptions() == []


def _run(app: Any, headers: list[tuple[bytes, bytes]],
         chunks: int) -> tuple[list[dict[str, Any]], int]:
    """Call ``BodyLimit(app)`` with a body of ``chunks`` 1 KiB chunks; (sent, chunks read)."""
    sent: list[dict[str, Any]] = []
    read = 0

    async def receive() -> dict[str, Any]:
        nonlocal read
        read += 1
        return {"type": "http.request", "body": b"x" * 1024, "more_body": read < chunks}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v1/events", "headers": headers,
             "query_string": b"", "app": _Stub()}
    asyncio.run(BodyLimit(app, limit=4096)(scope, receive, send))
    return sent, read


class _Stub:
    class state:  # stands for starlette's app.state
        pass


async def _reads_everything(scope: Any, receive: Any, send: Any) -> None:
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"read it all"})


def test_the_middleware_reads_no_byte_past_a_large_content_length() -> None:
    sent, read = _run(_reads_everything, [(b"content-length", b"1000000000")], chunks=10**6)
    assert read == 0 and sent[0]["status"] == 413


def test_the_middleware_stops_reading_a_stream_at_the_limit() -> None:
    sent, read = _run(_reads_everything, [], chunks=10**6)
    assert read == 5  # 4096 bytes allowed: the fifth KiB passes the limit
    assert sent[0]["status"] == 413 and len(sent) == 2
    small, _ = _run(_reads_everything, [], chunks=3)
    assert small[0]["status"] == 200
