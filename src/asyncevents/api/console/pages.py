"""The web console: server-rendered pages over the same App, no front-end build.

Pages: log in with an API token, the dashboard (:mod:`.console_dashboard`),
subscriptions (:mod:`.console_subscriptions`: the grid, mass actions, create
and edit), deliveries (Lucene search paged both ways with a total, CSV
export), a delivery's trace (attempts, payload, replay after a confirmation
page), the event catalog and the installed sinks. Every page checks the
scope its data needs; the pages are rendered by :mod:`.console_render`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Form, Path, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse

from asyncevents.api.console import dashboard as console_dashboard
from asyncevents.api.console import session
from asyncevents.api.console import subscriptions as console_subscriptions
from asyncevents.api.console.render import back, page, user
from asyncevents.api.deps import app_of
from asyncevents.api.problems import Problem, public_detail
from asyncevents.api.services.deliveries import export_lines, replay_all, started
from asyncevents.api.services.tokens import authenticate
from asyncevents.api.throttle import note_failure, retry_after
from asyncevents.core import search as engine
from asyncevents.core.events.patterns import is_pattern
from asyncevents.core.search.parse import parse_query
from asyncevents.core.search.results import trace_document
from asyncevents.core.search.sql import compile_where
from asyncevents.core.store import Store
from asyncevents.errors import AsyncEventsError, NotFound

__all__ = ["PAGE_SIZE", "console_problem", "install_console", "router"]

router = APIRouter(prefix="/console", include_in_schema=False)
_Text = Annotated[str, Query(max_length=4096)]
_UUID = Annotated[str, Path(max_length=64)]
_Position = Annotated[str, Query(max_length=64)]

PAGE_SIZE = 50
"""Deliveries on one page of the deliveries grid."""

HOME = "/console/dashboard"


@router.get("/login")
def login_form(request: Request) -> HTMLResponse:
    """The login form."""
    return _loginpage(request)


def _loginpage(request: Request, error: str = "", status: int = 200) -> HTMLResponse:
    value = session.new_login_csrf()
    response = page(request, "login.html", status, login_csrf=value, error=error, user=None)
    session.remember_login_csrf(request, response, value)
    return response


@router.post("/login")
def login(request: Request, token: Annotated[str, Form(max_length=200)],
          login_csrf: Annotated[str, Form(max_length=100)] = "") -> Response:
    """Check the token and open a session (a failure counts against the client's address)."""
    session.check_login_csrf(request, login_csrf)
    wait = retry_after(request)
    if wait is not None:
        refused = _loginpage(request, error=f"too many failed logins from this address; "
                                            f"try again in {wait} s", status=429)
        refused.headers["Retry-After"] = str(wait)
        return refused
    found = authenticate(app_of(request).store, token.strip())
    if found is None:
        note_failure(request)
        return _loginpage(request, error="unknown, expired or revoked token", status=401)
    response = RedirectResponse(HOME, status_code=303)
    session.start_session(request, response, found)
    return response


@router.post("/logout")
def logout(request: Request, csrf: Annotated[str, Form(max_length=100)] = "") -> Response:
    """End the session on the server, so its cookie opens nothing any more."""
    session_id = request.cookies.get(session.SESSION_COOKIE, "")
    session.check_csrf(request, session_id, csrf)
    response = RedirectResponse("/console/login", status_code=303)
    session.end_session(request, response)
    return response


@router.get("")
@router.get("/")
def home() -> RedirectResponse:
    """The dashboard."""
    return RedirectResponse(HOME, status_code=303)


def _grid(store: Store, q: str, before: str, after: str) -> dict[str, Any]:
    """One page of the search ``q``: newer than ``after``, older than ``before``, or the newest.

    Positions are delivery uuids, so a page never shifts when newer deliveries
    arrive; the offset (for "51-100 of 1234") is counted from the newest.
    """
    where = compile_where(parse_query(q, "search"), store.dialect)
    total = store.count_matching(where)
    position = store.delivery_position(after or before) if after or before else None
    if position is not None and after:
        rows = store.search_page_newer(where, limit=PAGE_SIZE + 1, after=position)
        items, has_newer, has_older = rows[-PAGE_SIZE:], len(rows) > PAGE_SIZE, True
    else:
        rows = store.search_page(where, limit=PAGE_SIZE + 1, before=position)
        items, has_older = rows[:PAGE_SIZE], len(rows) > PAGE_SIZE
        has_newer = position is not None
    first_position = (items[0].created_at, items[0].id) if items else None
    offset = store.count_newer(where, first_position) if has_newer and first_position else 0
    return {"items": items, "total": total, "first": offset + 1 if items else 0,
            "last": offset + len(items),
            "newer": items[0].id if has_newer and items else "",
            "older": items[-1].id if has_older and items else ""}


@router.get("/deliveries")
def deliveries_page(request: Request, q: _Text = "", before: _Position = "",
                    after: _Position = "") -> HTMLResponse:
    """The deliveries grid with the Lucene search box, paged both ways, with the total."""
    ctx = user(request, "deliveries:read")
    error = ""
    grid: dict[str, Any] = {"items": [], "total": 0, "first": 0, "last": 0, "newer": "",
                            "older": ""}
    try:
        grid = _grid(app_of(request).store, q, before, after)
    except AsyncEventsError as exc:
        error = public_detail(exc)
    return page(request, "deliveries.html", status=422 if error else 200, **ctx, q=q,
                error=error, **grid)


@router.get("/deliveries.csv")
def deliveries_csv(request: Request, q: _Text = "") -> StreamingResponse:
    """Every match of the search as CSV, streamed."""
    user(request, "deliveries:read")
    engine.check_query(q or "*")
    rows = export_lines(started(engine.iter_deliveries(app_of(request).store, q or "*")), "csv")
    return StreamingResponse(rows, media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": 'attachment; filename="deliveries.csv"'})


@router.get("/deliveries/{delivery_id}")
def tracepage(request: Request, delivery_id: _UUID, message: _Text = "") -> HTMLResponse:
    """One delivery: status, attempts, payload, and the Replay button."""
    ctx = user(request, "deliveries:read")
    store = app_of(request).store
    doc = trace_document(store, delivery_id)
    return page(request, "trace.html", **ctx, d=doc, message=message,
                replayable=_replayable(store, doc["subscription_id"]))


def _replayable(store: Store, subscription_id: str) -> bool:
    """A delivery can be replayed unless its subscription was deleted.

    A failed dispatch (no subscription) is replayed as a new dispatch.
    """
    if not subscription_id:
        return True
    try:
        store.get_subscription(subscription_id)
    except NotFound:
        return False
    return True


@router.get("/deliveries/{delivery_id}/replay")
def replay_confirm(request: Request, delivery_id: _UUID) -> HTMLResponse:
    """Ask before replaying."""
    ctx = user(request, "deliveries:replay")
    store = app_of(request).store
    doc = trace_document(store, delivery_id)
    return page(request, "replay.html", **ctx, d=doc,
                replayable=_replayable(store, doc["subscription_id"]))


@router.post("/deliveries/{delivery_id}/replay")
def replay(request: Request, delivery_id: _UUID,
           csrf: Annotated[str, Form(max_length=100)] = "") -> RedirectResponse:
    """Replay one delivery, then show its trace."""
    _, secret = session.current_token(request, "deliveries:replay")
    session.check_csrf(request, secret, csrf)
    app = app_of(request)
    if not _replayable(app.store, app.store.get_delivery(delivery_id).subscription_id):
        raise Problem(409, "this delivery's subscription was deleted: it cannot be replayed")
    replay_all(app, iter([delivery_id]))
    return back(f"/console/deliveries/{delivery_id}", message="replay queued")


@router.get("/events")
def eventspage(request: Request) -> HTMLResponse:
    """The event catalog."""
    ctx = user(request, "subscriptions:read")
    catalog = app_of(request).catalog
    # ``deprecated`` is read with a default: older catalogs' definitions lack it.
    rows = [{"name": n, "description": d.description, "resolver": d.resolver,
             "pattern": is_pattern(n), "deprecated": bool(getattr(d, "deprecated", False))}
            for n, d in sorted(catalog.definitions.items())]
    return page(request, "events.html", **ctx, events=rows, strict=catalog.strict)


@router.get("/sinks")
def sinkspage(request: Request) -> HTMLResponse:
    """Installed sinks and failed plugins."""
    ctx = user(request, "subscriptions:read")
    plugins = app_of(request).plugins
    return page(request, "sinks.html", **ctx,
                 sinks=sorted(plugins.sinks().values(), key=lambda s: s.name),
                 unavailable=plugins.unavailable, failed=plugins.failures)


async def _on_auth_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, session.ConsoleAuthError)
    if exc.status == 401:
        return RedirectResponse("/console/login", status_code=303)
    return _error_page(request, exc.status, exc.message)


def _error_page(request: Request, status: int, error: str) -> HTMLResponse:
    """The error page, with the navigation when a session is open (a 403 keeps it)."""
    found = session.current_user(request)
    ctx: dict[str, Any] = {"user": None}
    if found is not None:
        ctx = {"user": found[0], "csrf": session.csrf_token(found[1])}
    return page(request, "error.html", status=status, error=error, code=status, **ctx)


def install_console(api: FastAPI) -> None:
    """Mount the console on ``api`` (under ``/console``; ``/`` redirects there)."""
    api.include_router(router)
    api.include_router(console_dashboard.router)
    api.include_router(console_subscriptions.router)
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
    return _error_page(request, problem.status, problem.detail)
