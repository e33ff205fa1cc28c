"""The console's session: kept on the server, named by a random id in an HttpOnly cookie.

Logging in with an API token opens a session: a random 256-bit id goes in
the cookie (HttpOnly, so page scripts cannot read it; ``SameSite=Strict``,
so other sites cannot make the browser send it; ``Secure`` over HTTPS) and
only its SHA-256 is stored, with the token it was opened with. The token
itself never leaves the login form. A session ends at logout (its row is
deleted, so a copied cookie is worthless from then on), after
``console_idle_minutes`` without a page, ``console_session_hours`` after the
login, and when its token is revoked or expires.

Every form that changes something also carries a CSRF token derived from the
session id with HMAC, and a POST from another origin is refused outright.
The login form uses a double-submit cookie, so another site cannot log a
browser in with its own token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from fastapi import Request, Response

from asyncevents.api.deps import app_of
from asyncevents.api.services.tokens import ApiToken, from_row
from asyncevents.core.clock import utcnow

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
# last_seen is written at most this often per session, not on every page.
_TOUCH_EVERY = timedelta(seconds=15)


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


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8", "surrogatepass")).hexdigest()


def _lifetimes(request: Request) -> tuple[timedelta, timedelta]:
    """The idle and the absolute lifetime of a session, from the settings."""
    settings = app_of(request).settings
    return (timedelta(minutes=settings.console_idle_minutes),
            timedelta(hours=settings.console_session_hours))


def _session(request: Request) -> tuple[ApiToken, str] | None:
    """The token of the request's live session and the session id; None without one."""
    session_id = request.cookies.get(SESSION_COOKIE, "")
    if not session_id or len(session_id) > 100:
        return None
    idle, _ = _lifetimes(request)
    row = app_of(request).store.use_console_session(_hash(session_id), idle=idle,
                                                    touch_every=min(_TOUCH_EVERY, idle / 4))
    return None if row is None else (from_row(row), session_id)


def current_token(request: Request, scope: str) -> tuple[ApiToken, str]:
    """The session's API token and the session id, if the token grants ``scope``."""
    found = _session(request)
    if found is None:
        raise ConsoleAuthError(401, "please log in")
    if not found[0].allows(scope):
        raise ConsoleAuthError(403, f"your token lacks the {scope!r} scope")
    return found


def current_user(request: Request) -> tuple[ApiToken, str] | None:
    """The session's API token and the session id, whatever its scopes; None without one.

    For pages that show the navigation to whoever is logged in (the error page).
    """
    return _session(request)


def csrf_token(session_id: str) -> str:
    """The CSRF token of a session: only someone who holds the session can compute it."""
    return hmac.new(session_id.encode(), b"asyncevents-console-csrf",
                    hashlib.sha256).hexdigest()


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None  # a "null" origin (sandboxed frame, data: URL) is foreign
    return origin == f"{request.url.scheme}://{request.url.netloc}"


def check_csrf(request: Request, session_id: str, submitted: str) -> None:
    """Refuse a form that did not come from a page of this session."""
    if (not session_id or not _same_origin(request)
            or not hmac.compare_digest(csrf_token(session_id), submitted)):
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


def start_session(request: Request, response: Response, token: ApiToken) -> None:
    """Open a session for ``token`` and put its id in the cookie.

    A session the browser already had is ended first: a login always gets a
    fresh id, so an id planted before the login is worth nothing after it.
    """
    store = app_of(request).store
    old = request.cookies.get(SESSION_COOKIE, "")
    if old and len(old) <= 100:
        store.end_console_session(_hash(old))
    idle, absolute = _lifetimes(request)
    session_id = secrets.token_urlsafe(32)  # 256 random bits
    expires = store.open_console_session(session_hash=_hash(session_id), token_id=token.id,
                                         lifetime=absolute, idle=idle,
                                         not_after=token.expires_at)
    _cookie(response, request, SESSION_COOKIE, session_id,
            max(1, int((expires - utcnow()).total_seconds())))
    response.delete_cookie(LOGIN_COOKIE, path=PATH)


def end_session(request: Request, response: Response) -> None:
    """End the request's session on the server and forget its cookie."""
    session_id = request.cookies.get(SESSION_COOKIE, "")
    if session_id and len(session_id) <= 100:
        app_of(request).store.end_console_session(_hash(session_id))
    response.delete_cookie(SESSION_COOKIE, path=PATH)
