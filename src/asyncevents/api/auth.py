"""Bearer-token authentication and scopes for the REST API.

Each route declares the one scope it needs with ``Depends(require(scope))``;
``admin`` grants every scope. No token or an unknown, expired or revoked token is a
401, a token without the scope a 403, and in both cases the route does
nothing. The check runs before the request body is validated, so an
anonymous caller learns nothing from validation errors either. A wrong,
expired or revoked token counts against its client's address
(:mod:`asyncevents.api.throttle`): past 10 in a minute, the address gets a
429 with ``Retry-After`` instead, whatever token it sends.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Request, Security
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from asyncevents.api.deps import app_of
from asyncevents.api.problems import Problem
from asyncevents.api.services.tokens import SCOPES, ApiToken, authenticate
from asyncevents.api.throttle import note_failure, retry_after

__all__ = ["SCOPES", "ScopeCheck", "authorize", "bearer", "require", "route_scope",
           "throttled"]

bearer = HTTPBearer(
    auto_error=False, scheme_name="bearer",
    description="An API token from `asyncevents tokens create NAME --scope ...`.",
)
_REALM = 'Bearer realm="asyncevents"'


def throttled(request: Request) -> Problem | None:
    """The 429 problem for a request whose address failed too often lately, else None."""
    wait = retry_after(request)
    if wait is None:
        return None
    return Problem(429, f"too many failed authentications from this address; try again in "
                        f"{wait} s", kind="too-many-requests",
                   headers={"Retry-After": str(wait)})


def authorize(request: Request, secret: str | None, scope: str) -> ApiToken:
    """The token behind ``secret`` if it grants ``scope``; else a 401, 403 or 429 problem."""
    if not secret:
        raise Problem(401, "missing bearer token: send 'Authorization: Bearer <token>'",
                      kind="unauthorized", headers={"WWW-Authenticate": _REALM})
    refused = throttled(request)
    if refused is not None:
        raise refused
    token = authenticate(app_of(request).store, secret)
    if token is None:
        note_failure(request)
        raise Problem(401, "invalid, expired or revoked bearer token", kind="unauthorized",
                      headers={"WWW-Authenticate": f'{_REALM}, error="invalid_token"'})
    if not token.allows(scope):
        raise Problem(
            403, f"this token lacks the {scope!r} scope", kind="forbidden",
            headers={"WWW-Authenticate": f'{_REALM}, error="insufficient_scope", '
                                         f'scope="{scope}"'},
        )
    request.state.api_token = token
    return token


class ScopeCheck:
    """A dependency that lets a request through only with ``scope``."""

    def __init__(self, scope: str) -> None:
        if scope not in SCOPES:
            raise ValueError(f"unknown scope {scope!r}")
        self.scope = scope

    def __call__(
        self, request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
    ) -> ApiToken:
        """Check the request's bearer token."""
        return authorize(request, credentials.credentials if credentials else None, self.scope)


def require(scope: str) -> Callable[..., ApiToken]:
    """The dependency for a route that needs ``scope``."""
    return ScopeCheck(scope)


def route_scope(request: Request) -> str | None:
    """The scope the matched route requires, if it declares one."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return None
    stack = list(route.dependant.dependencies)
    while stack:
        dependency = stack.pop()
        if isinstance(dependency.call, ScopeCheck):
            return dependency.call.scope
        stack.extend(dependency.dependencies)
    return None


def bearer_secret(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer`` header, if any."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None
