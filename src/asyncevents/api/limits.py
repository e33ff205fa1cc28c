"""The request body limit: a body over it is refused with a 413 before it is read.

A declared ``Content-Length`` over the limit is answered at once, without
reading a byte of the body; a body without one (chunked) is counted as it
arrives and cut off at the limit, so no request makes the server hold more
than the limit in memory. The limit follows ``max_payload_bytes``: twice it
(JSON escapes and indentation make a body longer than the payload it
carries) plus 64 KiB for the rest of the request.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from asyncevents.api.problems import Problem, problem_response
from asyncevents.core.settings import Settings

__all__ = ["BodyLimit", "body_limit"]

_HEADROOM = 64 * 1024


def body_limit(settings: Settings) -> int:
    """The largest request body the API reads, in bytes."""
    return 2 * settings.max_payload_bytes + _HEADROOM


class _TooLarge(Exception):
    """Raised into the app when the body it reads passes the limit."""


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses it; counting still applies
    return None


class BodyLimit:
    """ASGI middleware refusing request bodies over ``limit`` bytes with a 413 problem."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse at once on a large ``Content-Length``; else count the body as it comes."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _declared_length(scope)
        if declared is not None and declared > self.limit:
            await self._refuse(scope, receive, send)
            return
        received = 0
        over = False
        started = False

        async def counted() -> Message:
            nonlocal received, over
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    over = True
                    raise _TooLarge
            return message

        async def guarded(message: Message) -> None:
            nonlocal started
            if over:
                return  # the app's answer to a read cut short: the 413 replaces it
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, guarded)
        except Exception:
            # The app may wrap or convert the cut-off read; only that one is ours.
            if not over:
                raise
        if over and not started:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        problem = Problem(413, f"the request body is over the {self.limit}-byte limit "
                               "(twice ASYNCEVENTS_MAX_PAYLOAD_BYTES plus 64 KiB)",
                          kind="too-large", headers={"Connection": "close"})
        response = problem_response(Request(scope, receive), problem)
        await response(scope, receive, send)
