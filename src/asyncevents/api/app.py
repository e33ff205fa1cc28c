"""The FastAPI application: the REST API under ``/v1``, the console under ``/console``."""

from __future__ import annotations

from importlib import metadata

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from asyncevents.api.auth import authorize, bearer_secret, route_scope
from asyncevents.api.console.pages import install_console
from asyncevents.api.docs import install_docs
from asyncevents.api.limits import BodyLimit, body_limit
from asyncevents.api.openapi import install_openapi
from asyncevents.api.problems import (
    Problem,
    http_problem,
    install_problem_handlers,
    problem_response,
    validation_problem,
)
from asyncevents.api.routes import deliveries as routes_deliveries
from asyncevents.api.routes import events as routes_events
from asyncevents.api.routes import ops as routes_ops
from asyncevents.api.routes import subscriptions as routes_subscriptions
from asyncevents.api.routes.magento import install_magento
from asyncevents.api.services.metrics import metrics_registry
from asyncevents.core.app import App

__all__ = ["create_app"]

_DESCRIPTION = """\
Subscriptions, events, deliveries and their traces, over HTTP.

Authenticate with `Authorization: Bearer <token>`; create tokens with
`asyncevents tokens create NAME --scope SCOPE ...`. Scopes:
`subscriptions:read`, `subscriptions:write`, `events:publish`,
`deliveries:read`, `deliveries:replay`, and `admin` (all of them).
Errors are RFC 9457 problem details; a validation error names its `field`.

Magento's routes (`/V1/async_event`, `/V1/async_events`) also answer under
Magento's REST base paths: `/rest/V1/...` and `/rest/<store code>/V1/...`
(`default`, `all`, ...), with the same scopes.
"""


def _version() -> str:
    try:
        return metadata.version("asyncevents")
    except metadata.PackageNotFoundError:
        return "dev"


def _refused(request: Request) -> Response | None:
    """A 401/403 answer if the request may not use its route, else None.

    Route dependencies check credentials before the body is read, but FastAPI
    parses the JSON body first: errors found there check credentials here, so
    an anonymous caller gets a 401 rather than a description of the body.
    """
    scope = route_scope(request)
    if scope is None:
        return None
    try:
        authorize(request, bearer_secret(request), scope)
    except Problem as problem:
        return problem_response(request, problem)
    return None


async def _on_validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return _refused(request) or problem_response(request, validation_problem(exc))


async def _on_http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400:
        refused = _refused(request)
        if refused is not None:
            return refused
    return problem_response(request, http_problem(request, exc))


def create_app(app: App, *, console: bool = True) -> FastAPI:
    """The web application serving ``app``: REST API, OpenAPI at ``/docs``, console."""
    api = FastAPI(
        title="asyncevents", version=_version(), description=_DESCRIPTION,
        docs_url=None, redoc_url=None, openapi_url="/openapi.json",
    )
    api.state.asyncevents = app
    api.state.metrics = metrics_registry(app)
    api.add_middleware(BodyLimit, limit=body_limit(app.settings))
    install_problem_handlers(api)
    api.add_exception_handler(RequestValidationError, _on_validation)
    api.add_exception_handler(StarletteHTTPException, _on_http)
    for module in (routes_subscriptions, routes_events, routes_deliveries, routes_ops):
        api.include_router(module.router)
    install_magento(api)
    if console:
        install_console(api)
    install_openapi(api)
    install_docs(api)
    return api
