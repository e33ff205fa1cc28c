"""Errors as RFC 9457 problem details (``application/problem+json``).

Every error the API returns is one JSON object with ``type``, ``title``,
``status``, ``detail`` and ``instance``; a validation error also names the
``field`` at fault and lists every ``errors`` entry as ``{field, message}``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from asyncevents.errors import (
    AsyncEventsError,
    ConfigError,
    InvalidPayload,
    InvalidQuery,
    InvalidRecipient,
    NotFound,
    StoreError,
    TransportError,
    UnknownEvent,
    UnknownSink,
)

__all__ = [
    "PROBLEM_JSON",
    "STORE_UNAVAILABLE",
    "Problem",
    "field_errors",
    "http_problem",
    "install_problem_handlers",
    "problem_response",
    "public_detail",
    "validation_problem",
]

log = structlog.get_logger("asyncevents.api")

PROBLEM_JSON = "application/problem+json"

# Most specific first: the first class an error is an instance of decides.
_STATUS: tuple[tuple[type[AsyncEventsError], int, str], ...] = (
    (NotFound, 404, "not-found"),
    (InvalidQuery, 422, "invalid-query"),
    (InvalidRecipient, 422, "invalid-recipient"),
    (UnknownEvent, 422, "unknown-event"),
    (UnknownSink, 422, "unknown-sink"),
    (InvalidPayload, 422, "invalid-payload"),
    (ConfigError, 422, "invalid-request"),
    (StoreError, 503, "store-unavailable"),
    (TransportError, 503, "transport-unavailable"),
)
_TITLES = {
    400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found",
    405: "Method not allowed", 409: "Conflict", 413: "Content too large",
    415: "Unsupported media type", 422: "Unprocessable content", 429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
}


#: What a response says of a database failure; the log has the error itself.
STORE_UNAVAILABLE = ("the database is unavailable or failed; try again later "
                     "(the server log says why)")


def public_detail(exc: AsyncEventsError) -> str:
    """The one line a response (REST or console) may show of ``exc``.

    A :class:`StoreError` names the database (its URL, host, user) and the
    driver's words: a response says only that the database failed, and the
    server log keeps the rest. Every other error is its own message.
    """
    if isinstance(exc, StoreError):
        return STORE_UNAVAILABLE
    return str(exc)


class Problem(Exception):
    """An error answered as a problem document; raise it from any route."""

    def __init__(self, status: int, detail: str, *, kind: str | None = None,
                 field: str | None = None, errors: list[dict[str, str]] | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.kind = kind or ("invalid-request" if status == 422 else None)
        self.field = field
        self.errors = errors
        self.headers = dict(headers or {})

    @classmethod
    def from_error(cls, exc: AsyncEventsError, field: str | None = None) -> Problem:
        """The problem for one of asyncevents' own errors (its detail: :func:`public_detail`)."""
        for error_type, status, kind in _STATUS:
            if isinstance(exc, error_type):
                return cls(status, public_detail(exc), kind=kind, field=field)
        return cls(422, public_detail(exc), kind="invalid-request", field=field)

    def document(self, instance: str) -> dict[str, Any]:
        """The JSON body."""
        body: dict[str, Any] = {
            "type": f"urn:asyncevents:problem:{self.kind}" if self.kind else "about:blank",
            "title": _TITLES.get(self.status, "Error"),
            "status": self.status,
            "detail": self.detail,
            "instance": instance,
        }
        if self.field is not None:
            body["field"] = self.field
            body["errors"] = self.errors or [{"field": self.field, "message": self.detail}]
        elif self.errors:
            body["errors"] = self.errors
        return body


def problem_response(request: Request, problem: Problem) -> Response:
    """The HTTP response for ``problem``.

    An app may set ``state.problem_page`` to a function that answers some
    requests (the console's pages) with HTML instead; it returns None for the rest.
    """
    page = getattr(request.app.state, "problem_page", None)
    if page is not None:
        html: Response | None = page(request, problem)
        if html is not None:
            return html
    return JSONResponse(problem.document(request.url.path), status_code=problem.status,
                        headers=problem.headers, media_type=PROBLEM_JSON)


@contextmanager
def field_errors(fields: Mapping[type[AsyncEventsError], str]) -> Iterator[None]:
    """Turn the errors listed in ``fields`` into problems naming that field."""
    try:
        yield
    except AsyncEventsError as exc:
        for error_type, field in fields.items():
            if isinstance(exc, error_type):
                raise Problem.from_error(exc, field) from None
        raise


def _field_name(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        parts = parts[1:]
    return ".".join(parts) or "body"


def validation_problem(exc: RequestValidationError) -> Problem:
    """A 422 naming every field that failed validation, the first one as ``field``."""
    errors = []
    for error in exc.errors():
        field = _field_name(error.get("loc", ()))
        message = str(error.get("msg", "invalid"))
        if error.get("type") == "json_invalid":
            field, message = "body", f"the body is not valid JSON: {message}"
        errors.append({"field": field, "message": message})
    if not errors:
        errors = [{"field": "body", "message": "invalid request"}]
    first = errors[0]
    return Problem(422, f"{first['field']}: {first['message']}", kind="validation-error",
                   field=first["field"], errors=errors)


async def _on_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    return problem_response(request, exc)


async def _on_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AsyncEventsError)
    problem = Problem.from_error(exc)
    if problem.status >= 500:
        log.warning("request failed", path=request.url.path, error=str(exc))
    return problem_response(request, problem)


def http_problem(request: Request, exc: StarletteHTTPException) -> Problem:
    """The problem for an HTTP error raised by Starlette or FastAPI themselves."""
    detail = exc.detail if isinstance(exc.detail, str) else _TITLES.get(exc.status_code, "Error")
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"no route for {request.method} {request.url.path}"
    if exc.status_code == 400 and detail == "There was an error parsing the body":
        return Problem(400, "the body could not be parsed: send UTF-8 JSON", kind="bad-body",
                       field="body", headers=exc.headers)
    return Problem(exc.status_code, detail, headers=exc.headers)


async def _on_http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    return problem_response(request, http_problem(request, exc))


async def _on_crash(request: Request, exc: Exception) -> Response:
    log.error("unexpected error", path=request.url.path, error=f"{type(exc).__name__}: {exc}")
    return problem_response(request, Problem(500, "unexpected error; see the server log",
                                             kind="internal"))


def install_problem_handlers(api: FastAPI) -> None:
    """Answer every error of ``api`` as a problem document.

    The handler for ``RequestValidationError`` is installed by the caller,
    which checks credentials first (see ``asyncevents.api.app``).
    """
    api.add_exception_handler(Problem, _on_problem)
    api.add_exception_handler(AsyncEventsError, _on_error)
    api.add_exception_handler(StarletteHTTPException, _on_http)
    api.add_exception_handler(Exception, _on_crash)
