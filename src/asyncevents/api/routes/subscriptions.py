"""``/v1/subscriptions``: create, list, get, update, delete (soft)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response

from asyncevents.api.auth import require
from asyncevents.api.deps import AppDep
from asyncevents.api.schemas import (
    Circuit,
    Subscription,
    SubscriptionCreate,
    SubscriptionPage,
    SubscriptionSaved,
    SubscriptionUpdate,
    TokenRotation,
)
from asyncevents.api.services import subscriptions as service
from asyncevents.core.subscribing.rules import OPTIONS

__all__ = ["router"]

router = APIRouter(prefix="/v1/subscriptions", tags=["subscriptions"])
_READ = [Depends(require("subscriptions:read"))]
_WRITE = [Depends(require("subscriptions:write"))]
_ID = Annotated[str, Path(max_length=64, description="The subscription id.")]


@router.post("", status_code=201, response_model=SubscriptionSaved, dependencies=_WRITE,
             responses={422: {"description": "A field is invalid (named in `field`)."}})
def create_subscription(body: SubscriptionCreate, app: AppDep) -> dict[str, Any]:
    """Subscribe a recipient to an event name or pattern.

    The recipient must pass the sink's checks: for ``http``, no private,
    loopback, link-local or metadata address unless ``ASYNCEVENTS_ALLOWED_NETWORKS``
    opens it. A host name that does not resolve right now is accepted, with
    an entry in ``warnings``; every recipient is checked again before each
    delivery. The verification token is stored encrypted and never returned; it is
    required for a sink that signs (``http``), not for one that does not (``eventbridge``).
    """
    saved = service.create(app, event_name=body.event_name, recipient=body.recipient,
                           token=body.verification_token or "", sink=body.sink,
                           filter=body.filter,
                           retry_policy=body.retry_policy, metadata=body.metadata,
                           **body.model_dump(include=set(OPTIONS)))
    return saved.public()


@router.get("", response_model=SubscriptionPage, dependencies=_READ)
def list_subscriptions(
    app: AppDep,
    active: bool | None = None,
    event_name: Annotated[str | None, Query(max_length=255)] = None,
    sink: Annotated[str | None, Query(max_length=64)] = None,
    recipient: Annotated[str | None, Query(max_length=2048,
                                           description="Part of the recipient.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> dict[str, Any]:
    """Live subscriptions, oldest first, one page at a time."""
    where = service.SubscriptionFilter(active=active, event_name=event_name, sink=sink,
                                       recipient=recipient)
    items, next_cursor = service.list_page(app, where, limit=limit, cursor=cursor)
    return {"items": [s.public() for s in items], "next_cursor": next_cursor}


@router.get("/{subscription_id}", response_model=Subscription, dependencies=_READ)
def get_subscription(subscription_id: _ID, app: AppDep) -> dict[str, Any]:
    """One subscription (never its token)."""
    return app.store.get_subscription(subscription_id).public()


@router.get("/{subscription_id}/circuit", response_model=Circuit, dependencies=_READ)
def get_circuit(subscription_id: _ID, app: AppDep) -> dict[str, Any]:
    """The subscription's circuit breaker: ``state`` (``closed`` or ``open``), the failure
    ratio of its recent attempts, failures in a row, the last error."""
    app.store.get_subscription(subscription_id, deleted=True)  # NotFound: 404
    return app.store.circuit_health([subscription_id])[subscription_id].public()


@router.patch("/{subscription_id}", response_model=SubscriptionSaved, dependencies=_WRITE)
def update_subscription(subscription_id: _ID, body: SubscriptionUpdate,
                        app: AppDep) -> dict[str, Any]:
    """Change ``active``, ``recipient``, ``filter``, ``retry_policy``, ``metadata``, the
    receiver protection options (``rate``, ``max_in_flight``, ``ordering_key``,
    ``signature``, ``headers``, ``disable_after``; null unsets one), or replace the
    ``verification_token``. Fields left out stay as they are; ``warnings`` as on create."""
    changes = body.model_dump(include=body.model_fields_set)
    return service.update(app, subscription_id, changes).public()


@router.post("/{subscription_id}/rotate-token", response_model=SubscriptionSaved,
             dependencies=_WRITE,
             responses={422: {"description": "A field is invalid (named in `field`)."}})
def rotate_token(subscription_id: _ID, body: TokenRotation, app: AppDep) -> dict[str, Any]:
    """Sign with a new verification token; until ``rotation_grace_until`` deliveries
    carry the old token's signature too (``webhook-signature: v1,<new> v1,<old>``).
    Neither token is ever returned."""
    return service.rotate_token(app, subscription_id, body.verification_token,
                                body.grace).public()


@router.delete("/{subscription_id}", status_code=204, dependencies=_WRITE)
def delete_subscription(subscription_id: _ID, app: AppDep) -> Response:
    """Stop delivering and hide the subscription; its deliveries stay searchable."""
    app.store.delete_subscription(subscription_id)
    return Response(status_code=204)
