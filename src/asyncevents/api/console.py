"""The web console: server-rendered pages over the same App, no front-end build.

Pages: log in with an API token, subscriptions (filter, enable, disable,
mass actions), deliveries (Lucene search, CSV export), a delivery's trace
(attempts, payload, replay after a confirmation page), the event catalog and
the installed sinks. Every page checks the scope its data needs.
"""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, FastAPI, Form, Path, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, PackageLoader, select_autoescape

from asyncevents.api import console_session as session
from asyncevents.api import subscriptions as service
from asyncevents.api.deps import app_of
from asyncevents.api.problems import Problem
from asyncevents.api.routes_deliveries import export_lines, replay_all
from asyncevents.api.tokens import authenticate
from asyncevents.core import search as engine
from asyncevents.core.catalog import is_pattern
from asyncevents.core.search.results import trace_document
from asyncevents.errors import AsyncEventsError

__all__ = ["install_console", "router"]

router = APIRouter(prefix="/console", include_in_schema=False)
templates = Jinja2Templates(env=Environment(
    loader=PackageLoader("asyncevents.api", "templates"),
    autoescape=select_autoescape(default=True), trim_blocks=True, lstrip_blocks=True,
))
templates.env.filters["pretty"] = lambda value: json.dumps(value, indent=2, ensure_ascii=False,
                                                           sort_keys=True, default=str)
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # same-origin, not no-referrer: with no-referrer, browsers send "Origin: null" on
    # form posts, which the CSRF check must refuse.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
_Text = Annotated[str, Query(max_length=4096)]
_UUID = Annotated[str, Path(max_length=64)]


def _page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    response = templates.TemplateResponse(request, name, context, status_code=status,
                                          headers=_HEADERS)
    assert isinstance(response, HTMLResponse)
    return response


def _user(request: Request, scope: str) -> dict[str, Any]:
    token, secret = session.current_token(request, scope)
    return {"user": token, "csrf": session.csrf_token(secret)}


def _back(url: str, **params: str) -> RedirectResponse:
    query = urlencode({k: v for k, v in params.items() if v})
    return RedirectResponse(url + ("?" + query if query else ""), status_code=303)


@router.get("/login")
def login_form(request: Request) -> HTMLResponse:
    """The login form."""
    return _login_page(request)


def _login_page(request: Request, error: str = "", status: int = 200) -> HTMLResponse:
    value = session.new_login_csrf()
    response = _page(request, "login.html", status, login_csrf=value, error=error, user=None)
    session.remember_login_csrf(request, response, value)
    return response


@router.post("/login")
def login(request: Request, token: Annotated[str, Form(max_length=200)],
          login_csrf: Annotated[str, Form(max_length=100)] = "") -> Response:
    """Check the token and open a session."""
    session.check_login_csrf(request, login_csrf)
    if authenticate(app_of(request).store, token.strip()) is None:
        return _login_page(request, error="unknown or revoked token", status=401)
    response = RedirectResponse("/console/deliveries", status_code=303)
    session.start_session(request, response, token.strip())
    return response


@router.post("/logout")
def logout(request: Request, csrf: Annotated[str, Form(max_length=100)] = "") -> Response:
    """Close the session."""
    secret = request.cookies.get(session.SESSION_COOKIE, "")
    session.check_csrf(request, secret, csrf)
    response = RedirectResponse("/console/login", status_code=303)
    session.end_session(response)
    return response


@router.get("")
@router.get("/")
def home() -> RedirectResponse:
    """The deliveries page."""
    return RedirectResponse("/console/deliveries", status_code=303)


@router.get("/subscriptions")
def subscriptions_page(
    request: Request, event_name: _Text = "", sink: _Text = "", recipient: _Text = "",
    active: Annotated[str, Query(pattern="^(|true|false)$")] = "",
    cursor: _Text = "", message: _Text = "",
) -> HTMLResponse:
    """The subscriptions grid."""
    ctx = _user(request, "subscriptions:read")
    where = service.SubscriptionFilter(
        active=None if not active else active == "true", event_name=event_name or None,
        sink=sink or None, recipient=recipient or None)
    items, next_cursor = service.list_page(app_of(request), where, limit=100,
                                           cursor=cursor or None)
    filters = {"event_name": event_name, "sink": sink, "recipient": recipient,
               "active": active}
    return _page(request, "subscriptions.html", **ctx, items=items, next_cursor=next_cursor,
                 filters=filters, message=message)


@router.post("/subscriptions/action")
def subscriptions_action(
    request: Request, action: Annotated[str, Form(pattern="^(enable|disable|delete)$")],
    csrf: Annotated[str, Form(max_length=100)] = "",
    ids: Annotated[list[str] | None, Form()] = None,
    only: Annotated[str, Query(max_length=64)] = "",
) -> RedirectResponse:
    """Enable, disable or delete the checked subscriptions (or the one row's, ``only``)."""
    _, secret = session.current_token(request, "subscriptions:write")
    session.check_csrf(request, secret, csrf)
    app = app_of(request)
    done = 0
    for sub_id in [only] if only else ids or []:
        if action == "delete":
            app.store.delete_subscription(sub_id)
        else:
            service.update(app, sub_id, {"active": action == "enable"})
        done += 1
    verb = {"enable": "enabled", "disable": "disabled", "delete": "deleted"}[action]
    noun = "subscription" if done == 1 else "subscriptions"
    return _back("/console/subscriptions", message=f"{done} {noun} {verb}")


@router.get("/deliveries")
def deliveries_page(request: Request, q: _Text = "", cursor: _Text = "") -> HTMLResponse:
    """The deliveries grid with the Lucene search box."""
    ctx = _user(request, "deliveries:read")
    error = ""
    items: list[Any] = []
    next_cursor = None
    try:
        page = engine.search_deliveries(app_of(request).store, q or "*", limit=50,
                                        cursor=cursor or None)
        items, next_cursor = page.items, page.next_cursor
    except AsyncEventsError as exc:
        error = str(exc)
    return _page(request, "deliveries.html", status=422 if error else 200, **ctx, q=q,
                 items=items, next_cursor=next_cursor, error=error)


@router.get("/deliveries.csv")
def deliveries_csv(request: Request, q: _Text = "") -> StreamingResponse:
    """Every match of the search as CSV, streamed."""
    _user(request, "deliveries:read")
    engine.check_query(q or "*")
    rows = export_lines(engine.iter_deliveries(app_of(request).store, q or "*"), "csv")
    return StreamingResponse(rows, media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": 'attachment; filename="deliveries.csv"'})


@router.get("/deliveries/{delivery_id}")
def trace_page(request: Request, delivery_id: _UUID, message: _Text = "") -> HTMLResponse:
    """One delivery: status, attempts, payload, and the Replay button."""
    ctx = _user(request, "deliveries:read")
    doc = trace_document(app_of(request).store, delivery_id)
    return _page(request, "trace.html", **ctx, d=doc, message=message)


@router.get("/deliveries/{delivery_id}/replay")
def replay_confirm(request: Request, delivery_id: _UUID) -> HTMLResponse:
    """Ask before replaying."""
    ctx = _user(request, "deliveries:replay")
    doc = trace_document(app_of(request).store, delivery_id)
    return _page(request, "replay.html", **ctx, d=doc)


@router.post("/deliveries/{delivery_id}/replay")
def replay(request: Request, delivery_id: _UUID,
           csrf: Annotated[str, Form(max_length=100)] = "") -> RedirectResponse:
    """Replay one delivery, then show its trace."""
    _, secret = session.current_token(request, "deliveries:replay")
    session.check_csrf(request, secret, csrf)
    replay_all(app_of(request), iter([delivery_id]))
    return _back(f"/console/deliveries/{delivery_id}", message="replay queued")


@router.get("/events")
def events_page(request: Request) -> HTMLResponse:
    """The event catalog."""
    ctx = _user(request, "subscriptions:read")
    catalog = app_of(request).catalog
    rows = [{"name": n, "description": d.description, "resolver": d.resolver,
             "pattern": is_pattern(n)} for n, d in sorted(catalog.definitions.items())]
    return _page(request, "events.html", **ctx, events=rows, strict=catalog.strict)


@router.get("/sinks")
def sinks_page(request: Request) -> HTMLResponse:
    """Installed sinks and failed plugins."""
    ctx = _user(request, "subscriptions:read")
    plugins = app_of(request).plugins
    return _page(request, "sinks.html", **ctx,
                 sinks=sorted(plugins.sinks().values(), key=lambda s: s.name),
                 failed=plugins.failures)


async def _on_auth_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, session.ConsoleAuthError)
    if exc.status == 401:
        return RedirectResponse("/console/login", status_code=303)
    return _page(request, "error.html", status=exc.status, message=exc.message, user=None)


def install_console(api: FastAPI) -> None:
    """Mount the console on ``api`` (under ``/console``; ``/`` redirects there)."""
    api.include_router(router)
    api.state.problem_page = console_problem
    api.add_exception_handler(session.ConsoleAuthError, _on_auth_error)

    @api.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/console/", status_code=303)

    del root


def console_problem(request: Request, problem: Problem) -> HTMLResponse | None:
    """The console page for an API problem raised under ``/console``, else None."""
    if not request.url.path.startswith("/console"):
        return None
    return _page(request, "error.html", status=problem.status, message=problem.detail,
                 user=None)
