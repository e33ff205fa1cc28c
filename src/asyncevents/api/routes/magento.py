"""Routes for users coming from Magento's async events module (``/V1/async_event``).

They take and return Magento's field names: ``recipient_url``, ``metadata``
(the sink name, ``http`` by default), ``status`` (active) and
``subscribed_at``. Subscription ids are uuids here, not integers.

Magento clients call its REST base path, so the same routes answer under
``/V1/...``, ``/rest/V1/...`` and ``/rest/<store code>/V1/...`` (``default``,
``all``, or any code Magento would accept: a letter, then letters, digits
or ``_``, at most 32 characters). There is one store here: the code is
checked, then ignored.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from asyncevents.api.auth import require
from asyncevents.api.deps import AppDep
from asyncevents.api.schemas import Name, Recipient, Secret, SinkName
from asyncevents.api.services import subscriptions as service
from asyncevents.core.models import Subscription, shown_recipient

__all__ = ["STORE_CODE_PATTERN", "AsyncEvent", "AsyncEventRequest", "AsyncEventUpdate",
           "MagentoSaved", "MagentoSubscription", "install_magento", "router"]

router = APIRouter(tags=["magento compatibility"])
STORE_CODE_PATTERN = r"^[A-Za-z][A-Za-z0-9_]{0,31}$"
"""A Magento store code: a letter, then letters, digits or underscores (32 at most)."""
_FIELDS = {"recipient": "asyncEvent.recipient_url", "event_name": "asyncEvent.event_name",
           "sink": "asyncEvent.metadata", "verification_token": "asyncEvent.verification_token"}
_ID = Annotated[str, Path(max_length=64, description="The subscription id (a uuid).")]


class AsyncEvent(BaseModel):
    """Magento's ``asyncEvent`` object."""

    model_config = ConfigDict(extra="ignore")  # Magento clients may send store_id, status...

    event_name: Name
    recipient_url: Recipient
    verification_token: Secret
    metadata: SinkName = Field(default="http", description="The sink name (Magento's notifier).")


class AsyncEventRequest(BaseModel):
    """The body of ``POST /V1/async_event``."""

    asyncEvent: AsyncEvent


class AsyncEventUpdate(BaseModel):
    """Magento's ``asyncEvent`` object in ``PUT``: every field optional."""

    model_config = ConfigDict(extra="ignore")

    recipient_url: Recipient | None = None
    verification_token: Secret | None = None
    status: bool | None = None


class AsyncEventUpdateRequest(BaseModel):
    """The body of ``PUT /V1/async_event/{id}``."""

    asyncEvent: AsyncEventUpdate


class MagentoSubscription(BaseModel):
    """A subscription the way Magento shows it (never with its token)."""

    subscription_id: str
    event_name: str
    recipient_url: str
    status: bool
    metadata: str
    subscribed_at: str
    store_id: int = 0


class MagentoSaved(MagentoSubscription):
    """A subscription just saved; ``warnings`` only when there is something to say."""

    warnings: list[str] | None = Field(
        default=None, description="Accepted, but worth a look: e.g. a recipient host that "
                                  "does not resolve now (checked again before every delivery).")


class MagentoList(BaseModel):
    """Magento's search result shape."""

    items: list[MagentoSubscription]
    search_criteria: dict[str, Any]
    total_count: int


def _magento(sub: Subscription) -> dict[str, Any]:
    return {"subscription_id": sub.id, "event_name": sub.event_name,
            "recipient_url": shown_recipient(sub.recipient), "status": sub.active,
            "metadata": sub.sink,
            "subscribed_at": sub.created_at.strftime("%Y-%m-%d %H:%M:%S"), "store_id": 0}


def _saved(saved: service.Saved) -> dict[str, Any]:
    shown = _magento(saved.subscription)
    if saved.warnings:  # else Magento's shape, exactly
        shown["warnings"] = saved.warnings
    return shown


@router.post("/V1/async_event", response_model=MagentoSaved,
             response_model_exclude_unset=True,
             dependencies=[Depends(require("subscriptions:write"))])
def save_async_event(body: AsyncEventRequest, app: AppDep) -> dict[str, Any]:
    """Subscribe, as Magento's ``AsyncEventRepositoryInterface::save``.

    A recipient host that does not resolve right now is accepted, with
    ``warnings``; it is checked again before every delivery.
    """
    event = body.asyncEvent
    return _saved(service.create(app, event_name=event.event_name,
                                 recipient=event.recipient_url,
                                 token=event.verification_token, sink=event.metadata,
                                 fields=_FIELDS))


@router.put("/V1/async_event/{subscription_id}", response_model=MagentoSaved,
            response_model_exclude_unset=True,
            dependencies=[Depends(require("subscriptions:write"))])
def update_async_event(subscription_id: _ID, body: AsyncEventUpdateRequest,
                       app: AppDep) -> dict[str, Any]:
    """Change the recipient, token or status of a subscription."""
    event = body.asyncEvent
    changes: dict[str, Any] = {}
    if event.recipient_url is not None:
        changes["recipient"] = event.recipient_url
    if event.verification_token is not None:
        changes["verification_token"] = event.verification_token
    if event.status is not None:
        changes["active"] = event.status
    return _saved(service.update(app, subscription_id, changes, fields=_FIELDS))


@router.get("/V1/async_event/{subscription_id}", response_model=MagentoSubscription,
            dependencies=[Depends(require("subscriptions:read"))])
def get_async_event(subscription_id: _ID, app: AppDep) -> dict[str, Any]:
    """One subscription, as Magento's ``get``."""
    return _magento(app.store.get_subscription(subscription_id))


@router.get("/V1/async_events", response_model=MagentoList,
            dependencies=[Depends(require("subscriptions:read"))])
def list_async_events(
    app: AppDep,
    page_size: Annotated[int, Query(alias="searchCriteria[pageSize]", ge=1, le=500)] = 100,
    current_page: Annotated[int, Query(alias="searchCriteria[currentPage]", ge=1,
                                       le=1_000_000)] = 1,
) -> dict[str, Any]:
    """Subscriptions, as Magento's ``getList`` (page size and current page only)."""
    subs = app.store.list_subscriptions()
    start = (current_page - 1) * page_size
    return {"items": [_magento(s) for s in subs[start:start + page_size]],
            "search_criteria": {"page_size": page_size, "current_page": current_page},
            "total_count": len(subs)}


def _store_code(store_code: Annotated[str, Path(
        pattern=STORE_CODE_PATTERN,
        description="A Magento store code (`default`, `all`...); one store here.")]) -> str:
    return store_code


def install_magento(api: FastAPI) -> None:
    """Serve the Magento routes under ``/V1``, ``/rest/V1`` and ``/rest/<store code>/V1``.

    The aliases are left out of the OpenAPI document (the same operations,
    listed once); they share the routes' dependencies, so auth is the same.
    """
    api.include_router(router)
    api.include_router(router, prefix="/rest", include_in_schema=False)
    api.include_router(router, prefix="/rest/{store_code}", include_in_schema=False,
                       dependencies=[Depends(_store_code)])
