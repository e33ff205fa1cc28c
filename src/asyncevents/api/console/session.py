"""The console's session: an API token in an HttpOnly cookie, and CSRF protection.

The session cookie holds the API token the user logged in with (HttpOnly, so
page scripts cannot read it; ``SameSite=Strict``, so other sites cannot make
the browser send it; ``Secure`` over HTTPS). Every form that changes
something also carries a CSRF token derived from the session token with
HMAC, and a POST from another origin is refused outright. The login form
uses a double-submit cookie, so another site cannot log a browser in with
its own token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from fastapi import Request, Response

from asyncevents.api.deps import app_of
from asyncevents.api.services.tokens import ApiToken, authenticate

__all__ = [
    "LOGIN_COOKIE",
    "SESSION_COOKIE",
    "ConsoleAuthError",
    "check_csrf",
    "check_login_csrf",
    "csrf_token",
    "current_token",
    "current_user",
    "end_session",
    "new_login_csrf",
    "remember_login_csrf",
    "start_session",
]

SESSION_COOKIE = "asyncevents_session"
LOGIN_COOKIE = "asyncevents_login"
PATH = "/console"
_MAX_AGE = 8 * 3600


class ConsoleAuthError(Exception):
    """No valid session (send to the login page) or a forbidden action (403 page)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _cookie(response: Response, request: Request, name: str, value: str,
            max_age: int) -> None:
    response.set_cookie(name, value, max_age=max_age, path=PATH, httponly=True,
                        samesite="strict", secure=_secure(request))


def current_token(request: Request, scope: str) -> tuple[ApiToken, str]:
    """The session's API token and its secret, if it grants ``scope``."""
    secret = request.cookies.get(SESSION_COOKIE)
    token = authenticate(app_of(request).store, secret) if secret else None
    if token is None or secret is None:
        raise ConsoleAuthError(401, "please log in")
    if not token.allows(scope):
        raise ConsoleAuthError(403, f"your token lacks the {scope!r} scope")
    return token, secret


def current_user(request: Request) -> tuple[ApiToken, str] | None:
    """The session's API token and its secret, whatever its scopes; None without a session.

    For pages that show the navigation to whoever is logged in (the error page).
    """
    secret = request.cookies.get(SESSION_COOKIE)
    token = authenticate(app_of(request).store, secret) if secret else None
    return None if token is None or secret is None else (token, secret)


def csrf_token(secret: str) -> str:
    """The CSRF token of a session: only someone who holds the session can compute it."""
    return hmac.new(secret.encode(), b"asyncevents-console-csrf", hashlib.sha256).hexdigest()


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None  # a "null" origin (sandboxed frame, data: URL) is foreign
    return origin == f"{request.url.scheme}://{request.url.netloc}"


def check_csrf(request: Request, secret: str, submitted: str) -> None:
    """Refuse a form that did not come from a page of this session."""
    if not _same_origin(request) or not hmac.compare_digest(csrf_token(secret), submitted):
        raise ConsoleAuthError(403, "the form expired or came from another site; reload the "
                                    "page and try again")


def new_login_csrf() -> str:
    """A fresh login-form token (also set as a cookie by ``remember_login_csrf``)."""
    return secrets.token_urlsafe(24)


def remember_login_csrf(request: Request, response: Response, value: str) -> None:
    """Set the login-form token as a cookie too (double submit)."""
    _cookie(response, request, LOGIN_COOKIE, value, 3600)


def check_login_csrf(request: Request, submitted: str) -> None:
    """Refuse a login form that this browser was not shown."""
    expected = request.cookies.get(LOGIN_COOKIE, "")
    if (not expected or not _same_origin(request)
            or not hmac.compare_digest(expected, submitted)):
        raise ConsoleAuthError(403, "the login form expired; reload the page and try again")


def start_session(request: Request, response: Response, secret: str) -> None:
    """Keep ``secret`` in the session cookie."""
    _cookie(response, request, SESSION_COOKIE, secret, _MAX_AGE)
    response.delete_cookie(LOGIN_COOKIE, path=PATH)


def end_session(response: Response) -> None:
    """Forget the session."""
    response.delete_cookie(SESSION_COOKIE, path=PATH)
