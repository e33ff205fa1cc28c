"""The console's subscription pages: the grid, a subscription's page, create and edit.

A form is checked exactly as the REST API checks a request: the same
request schemas (:mod:`asyncevents.api.schemas`), then the same service
(:mod:`asyncevents.api.services.subscriptions`) and so the core's ``SubscriptionRules``.
A refused form shows every refusal at once (:mod:`.forms`: a summary above the
form, each message next to the field it names, run field by field through
:mod:`asyncevents.core.subscribing.problems`) and keeps what was typed
except the token; nothing is stored. The verification token is write-only:
no page ever shows it, and an empty token field on the edit form keeps the
current one.
"""

from __future__ import annotations

import math
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Path, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from pydantic import BaseModel, Field

from asyncevents.api.console import session
from asyncevents.api.console.forms import FormErrors
from asyncevents.api.console.render import back, page, user
from asyncevents.api.deps import app_of
from asyncevents.api.problems import Problem
from asyncevents.api.schemas import SubscriptionCreate, SubscriptionUpdate, TokenRotation
from asyncevents.api.services import subscriptions as service
from asyncevents.core.models import (
    Subscription,
    is_secret_header,
    recipient_origin,
    shown_recipient,
)
from asyncevents.core.subscribing.problems import create_problems, update_problems
from asyncevents.core.subscribing.rules import OPTIONS, SubscriptionRules, parse_grace
from asyncevents.errors import AsyncEventsError, InvalidQuery, NotFound

__all__ = ["POLICY_FIELDS", "RotationForm", "SubscriptionForm", "router"]

router = APIRouter(prefix="/console", include_in_schema=False)
_Text = Annotated[str, Query(max_length=4096)]
_ID = Annotated[str, Path(max_length=64)]

POLICY_FIELDS = ("max_deaths", "backoff", "base", "max_backoff", "jitter")
"""The retry policy overrides the form edits (others a subscription has are kept)."""

class SubscriptionForm(BaseModel):
    """The subscription form as posted: text fields, checked by the API's schemas after."""

    csrf: str = Field(default="", max_length=100)
    event_name: str = Field(default="", max_length=4096)
    sink: str = Field(default="http", max_length=4096)
    recipient: str = Field(default="", max_length=4096)
    token: str = Field(default="", max_length=4096)
    filter: str = Field(default="", max_length=4096)
    max_deaths: str = Field(default="", max_length=64)
    backoff: str = Field(default="", max_length=64)
    base: str = Field(default="", max_length=64)
    max_backoff: str = Field(default="", max_length=64)
    jitter: str = Field(default="", max_length=64)
    rate: str = Field(default="", max_length=64)
    max_in_flight: str = Field(default="", max_length=64)
    ordering_key: str = Field(default="", max_length=4096)
    signature: str = Field(default="hmac", max_length=64)
    headers: str = Field(default="", max_length=20000)
    disable_after: str = Field(default="", max_length=64)

    @classmethod
    def of(cls, sub: Subscription) -> SubscriptionForm:
        """The form filled with a subscription's values (never its token)."""
        policy = sub.retry_policy or {}
        shown = sub.public()["headers"]  # secret-looking values masked
        return cls(event_name=sub.event_name, sink=sub.sink,
                   recipient=shown_recipient(sub.recipient),
                   filter=sub.filter or "", rate=sub.rate or "",
                   max_in_flight=str(sub.max_in_flight or ""),
                   ordering_key=sub.ordering_key or "", signature=sub.signature,
                   headers="\n".join(f"{k}: {v}" for k, v in shown.items()),
                   disable_after=f"{sub.disable_after:g}" if sub.disable_after else "",
                   **{k: str(policy[k]) for k in POLICY_FIELDS if policy.get(k) is not None})

    def options(self, current: Subscription | None, errors: FormErrors, *,
                moved: bool = False) -> dict[str, Any]:
        """The receiver protection options as the REST API takes them (empty: unset).

        A header shown masked (``***``) keeps the value ``current`` has, unless
        the recipient ``moved`` to another host: then it is left out (a secret
        goes to a new host only when typed again). A field the form cannot read
        is left out, its refusal kept in ``errors``.
        """
        options: dict[str, Any] = {
            "rate": self.rate.strip() or None,
            "max_in_flight": _whole("max_in_flight", self.max_in_flight),
            "ordering_key": self.ordering_key.strip() or None,
            "signature": self.signature.strip() or None,
        }
        with errors.field("headers"):
            options["headers"] = self._headers(current, moved)
        with errors.field("disable_after"):
            raw = self.disable_after.strip()
            options["disable_after"] = _number("disable_after", raw) if raw else None
        return options

    def _headers(self, current: Subscription | None, moved: bool) -> dict[str, str]:
        headers: dict[str, str] = {}
        for line in self.headers.splitlines():
            if not line.strip():
                continue
            name, colon, value = line.partition(":")
            if not colon or not name.strip():
                raise Problem(422, f"invalid header line {line.strip()!r}: give 'Name: value'",
                              field="headers")
            value = value.strip()
            if value == "***" and current is not None and name.strip() in current.headers:
                if moved:
                    continue
                value = current.headers[name.strip()]
            headers[name.strip()] = value
        return headers

    def retry_policy(self, current: dict[str, Any] | None) -> dict[str, Any] | None:
        """The overrides: the form's retry fields over those of ``current`` it does not edit."""
        policy = {k: v for k, v in (current or {}).items() if k not in POLICY_FIELDS}
        for name in POLICY_FIELDS:
            raw = getattr(self, name).strip()
            if raw:
                policy[name] = raw if name == "backoff" else _number(name, raw)
        return policy or None


def _typed_recipient(typed: str, current: str) -> str:
    """The recipient the edit form means: ``current`` where it shows it redacted (``***@``).

    Credentials come back only within the same host; typed elsewhere, ``***``
    is what was typed.
    """
    if typed == shown_recipient(current):
        return current
    scheme, separator, rest = current.partition("://")
    masked = f"{scheme}://***@"
    if (separator and typed.startswith(masked) and shown_recipient(current).startswith(masked)
            and recipient_origin(typed) == recipient_origin(current)):
        return f"{scheme}://{rest.split('@', 1)[0]}@" + typed[len(masked):]
    return typed


def _whole(name: str, raw: str) -> Any:
    """A whole number typed in a field (empty: unset); other text goes on to the schema."""
    raw = raw.strip()
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        return raw


def _number(name: str, raw: str) -> Any:
    """A number typed in a field, as JSON would carry it; other text goes on to the rules."""
    for kind in (int, float):
        try:
            value = kind(raw)
        except ValueError:
            continue
        if not math.isfinite(value):
            field = name if name == "disable_after" else "retry_policy"
            raise Problem(422, f"invalid {field.replace('_', ' ')} field {name!r}: give a "
                          "finite number", field=field)
        return value
    return raw  # the rules refuse it with their own words


def _rules(request: Request) -> SubscriptionRules:
    app = app_of(request)
    return SubscriptionRules(app.settings, app.catalog, app.plugins)


def _sinks(request: Request) -> list[str]:
    return sorted(app_of(request).plugins.sinks())


def _form_page(request: Request, form: SubscriptionForm, *, sub: Subscription | None = None,
               status: int = 200, errors: FormErrors | None = None,
               message: str = "", deleted: bool = False,
               scope: str = "subscriptions:read") -> HTMLResponse:
    ctx = user(request, scope)
    health = circuit = None
    if sub is not None:
        health = app_of(request).store.subscription_health([sub.id])[sub.id]
        circuit = app_of(request).store.circuit_health([sub.id])[sub.id]
    return page(request, "subscription.html", status, script=True, **ctx, form=form, sub=sub,
                sinks=_sinks(request), errors=errors or FormErrors(), message=message,
                health=health, circuit=circuit, deleted=deleted)


@router.get("/subscriptions")
def subscriptions_page(
    request: Request, event_name: _Text = "", sink: _Text = "", recipient: _Text = "",
    active: Annotated[str, Query(pattern="^(|true|false)$")] = "",
    cursor: _Text = "", message: _Text = "",
) -> HTMLResponse:
    """The subscriptions grid, with each one's circuit, success ratio and last error."""
    ctx = user(request, "subscriptions:read")
    app = app_of(request)
    where = service.SubscriptionFilter(
        active=None if not active else active == "true", event_name=event_name or None,
        sink=sink or None, recipient=recipient or None)
    items, next_cursor = service.list_page(app, where, limit=100, cursor=cursor or None)
    filters = {"event_name": event_name, "sink": sink, "recipient": recipient,
               "active": active}
    health = app.store.subscription_health([s.id for s in items])
    circuits = app.store.circuit_health([s.id for s in items])
    return page(request, "subscriptions.html", **ctx, items=items, next_cursor=next_cursor,
                filters=filters, message=message, health=health, circuits=circuits)


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
    if only and action != "delete" and request.query_params.get("to") == "page":
        return back(f"/console/subscriptions/{quote(only, safe='')}",
                    message=f"{done} {noun} {verb}")
    return back("/console/subscriptions", message=f"{done} {noun} {verb}")


@router.get("/subscriptions/new")
def new_form(request: Request) -> HTMLResponse:
    """The form for a new subscription."""
    return _form_page(request, SubscriptionForm(), scope="subscriptions:write")


@router.post("/subscriptions/new")
def create(request: Request, form: Annotated[SubscriptionForm, Form()]) -> Response:
    """Create a subscription, or show the form again with every refusal, each at its field."""
    _, secret = session.current_token(request, "subscriptions:write")
    session.check_csrf(request, secret, form.csrf)
    errors = FormErrors()
    policy = None
    with errors.field("retry_policy"):
        policy = form.retry_policy(None)
    options = form.options(None, errors)
    body = errors.validated(SubscriptionCreate, {
        "event_name": form.event_name, "recipient": form.recipient,
        "verification_token": form.token or None, "sink": form.sink,
        "filter": form.filter or None, "retry_policy": policy, **options})
    for problem in create_problems(
            _rules(request), event_name=form.event_name, sink=form.sink,
            recipient=form.recipient, token=form.token, filter=form.filter or None,
            retry_policy=policy if "retry_policy" not in errors else None,
            options={k: v for k, v in options.items() if k not in errors}):
        errors.add_error(problem)
    if not errors:
        assert isinstance(body, SubscriptionCreate)
        try:
            saved = service.create(app_of(request), event_name=body.event_name,
                                   recipient=body.recipient,
                                   token=body.verification_token or "", sink=body.sink,
                                   filter=body.filter, retry_policy=body.retry_policy,
                                   **body.model_dump(include=set(OPTIONS)))
        except (Problem, AsyncEventsError) as exc:
            errors.add_error(exc)
    if errors:
        return _form_page(request, form.model_copy(update={"token": ""}), status=422,
                          errors=errors, scope="subscriptions:write")
    return back(f"/console/subscriptions/{saved.subscription.id}",
                message="; ".join(["subscription created", *saved.warnings]))


@router.get("/subscriptions/check-filter")
def check_filter(request: Request, filter: _Text = "") -> JSONResponse:
    """``{"ok": true}``, or ``{"ok": false, "error": one line}``: the form's live check."""
    user(request, "subscriptions:read")
    app = app_of(request)
    try:
        SubscriptionRules(app.settings, app.catalog, app.plugins).check_filter(filter or None)
    except InvalidQuery as exc:
        return JSONResponse({"ok": False, "error": str(exc)},
                            headers={"Cache-Control": "no-store"})
    return JSONResponse({"ok": True}, headers={"Cache-Control": "no-store"})


@router.get("/subscriptions/{subscription_id}")
def subscription_page(request: Request, subscription_id: _ID,
                      message: _Text = "") -> HTMLResponse:
    """One subscription: its health, its deliveries, and the edit form."""
    user(request, "subscriptions:read")
    store = app_of(request).store
    try:
        sub = store.get_subscription(subscription_id)
        deleted = False
    except NotFound:
        sub = store.get_subscription(subscription_id, deleted=True)  # NotFound: the 404 page
        deleted = True
    return _form_page(request, SubscriptionForm.of(sub), sub=sub, message=message,
                      deleted=deleted)


class RotationForm(BaseModel):
    """The token rotation form as posted."""

    csrf: str = Field(default="", max_length=100)
    token: str = Field(default="", max_length=4096)
    grace: str = Field(default="24h", max_length=64)


@router.post("/subscriptions/{subscription_id}/rotate-token")
def rotate_token(request: Request, subscription_id: _ID,
                 form: Annotated[RotationForm, Form()]) -> Response:
    """Rotate the verification token with a grace period, or show every refusal."""
    _, secret = session.current_token(request, "subscriptions:write")
    session.check_csrf(request, secret, form.csrf)
    app = app_of(request)
    current = app.store.get_subscription(subscription_id)
    found = FormErrors()
    body = found.validated(TokenRotation, {"verification_token": form.token,
                                           "grace": form.grace})
    if "token" not in found:
        with found.field("token"):
            _rules(request).check_token(form.token)
    if "grace" not in found:
        with found.field("grace"):
            parse_grace(form.grace)
    if not found:
        assert isinstance(body, TokenRotation)
        try:
            saved = service.rotate_token(app, subscription_id, body.verification_token,
                                         body.grace)
        except (Problem, AsyncEventsError) as exc:
            found.add_error(exc, "token")
    if found:
        # This form's fields: its token is the new one (not the edit form's), and a
        # refusal about no field in particular is about it too.
        errors = FormErrors()
        for error in found.items:
            errors.add("grace" if error.field == "grace" else "new_token", error.message)
        return _form_page(request, SubscriptionForm.of(current), sub=current, status=422,
                          errors=errors, scope="subscriptions:write")
    until = saved.subscription.previous_token_until
    return back(f"/console/subscriptions/{subscription_id}",
                message="token rotated" + (f"; the old one also signs until "
                                           f"{until:%Y-%m-%d %H:%M:%S} UTC" if until else ""))


@router.post("/subscriptions/{subscription_id}")
def edit(request: Request, subscription_id: _ID,
         form: Annotated[SubscriptionForm, Form()]) -> Response:
    """Apply the edit form, or show it again with every refusal, each at its field."""
    _, secret = session.current_token(request, "subscriptions:write")
    session.check_csrf(request, secret, form.csrf)
    app = app_of(request)
    current = app.store.get_subscription(subscription_id)
    errors = FormErrors()
    changes = _changes(form, current, errors)
    body = errors.validated(SubscriptionUpdate, changes)
    core = {("token" if k == "verification_token" else k): v for k, v in changes.items()
            if k not in errors and ("token" if k == "verification_token" else k) not in errors}
    for problem in update_problems(_rules(request), current, core):
        errors.add_error(problem)
    if not errors:
        assert isinstance(body, SubscriptionUpdate)
        try:
            saved = service.update(app, subscription_id,
                                   body.model_dump(include=body.model_fields_set))
        except (Problem, AsyncEventsError) as exc:
            errors.add_error(exc)
    if errors:
        shown = form.model_copy(update={"token": "", "event_name": current.event_name,
                                        "sink": current.sink})
        return _form_page(request, shown, sub=current, status=422, errors=errors,
                          scope="subscriptions:write")
    done = "subscription saved" if changes else "nothing changed"
    return back(f"/console/subscriptions/{subscription_id}",
                message="; ".join([done, *saved.warnings]))


def _changes(form: SubscriptionForm, current: Subscription,
             errors: FormErrors) -> dict[str, Any]:
    """What the edit form changes, in the REST API's words (a field it cannot read: left out,
    its refusal in ``errors``)."""
    changes: dict[str, Any] = {}
    recipient = _typed_recipient(form.recipient, current.recipient)
    if recipient != current.recipient:
        changes["recipient"] = recipient
    moved = recipient_origin(recipient) != recipient_origin(current.recipient)
    kept = {k: v for k, v in current.headers.items() if not is_secret_header(k)}
    if (form.filter or None) != current.filter:
        changes["filter"] = form.filter or None
    with errors.field("retry_policy"):
        policy = form.retry_policy(current.retry_policy)
        if policy != current.retry_policy:
            changes["retry_policy"] = policy
    if form.token:  # empty: keep the current token (it is never shown to be kept)
        changes["verification_token"] = form.token
    for name, value in form.options(current, errors, moved=moved).items():
        if name == "signature":
            value = value or "hmac"
        if name == "headers" and moved and value == kept:
            continue  # only the masked secrets left out: the rules drop them, and say so
        if value != getattr(current, name):
            changes[name] = value
    return changes
