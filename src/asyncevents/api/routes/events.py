"""``/v1/events``: the catalog, and publishing (idempotent with ``Idempotency-Key``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Response
from pydantic import Field

from asyncevents.api.auth import require
from asyncevents.api.deps import AppDep
from asyncevents.api.problems import field_errors
from asyncevents.api.schemas import Catalog, EventDefinition, PublishRequest, PublishResult
from asyncevents.api.services.idempotency import publish_once
from asyncevents.api.services.tokens import ApiToken
from asyncevents.core.events.patterns import is_pattern
from asyncevents.errors import InvalidPayload, UnknownEvent

__all__ = ["router"]

router = APIRouter(prefix="/v1/events", tags=["events"])


class CatalogEvent(EventDefinition):
    """One entry of the event catalog, with its JSON Schema and deprecation."""

    deprecated: bool = Field(description="Publishing it still works, and logs a warning.")
    json_schema: dict[str, Any] | None = Field(
        alias="schema", description="The JSON Schema that published data must match, if any.")


class EventCatalog(Catalog):
    """The event catalog."""

    events: list[CatalogEvent]  # type: ignore[assignment]


@router.get("", response_model=EventCatalog, response_model_by_alias=True,
            dependencies=[Depends(require("subscriptions:read"))])
def list_events(app: AppDep) -> dict[str, Any]:
    """The event catalog: names and patterns that may be published and subscribed to."""
    catalog = app.catalog
    events = [
        {"name": name, "description": d.description, "resolver": d.resolver,
         "pattern": is_pattern(name), "deprecated": d.deprecated,
         "schema": catalog.schemas[name].schema if name in catalog.schemas else None}
        for name, d in sorted(catalog.definitions.items())
    ]
    return {"strict": catalog.strict, "events": events}


@router.post("", status_code=202, response_model=PublishResult,
             responses={200: {"model": PublishResult,
                              "description": "Seen before: the first event's id."},
                        409: {"description": "The same key is being published right now."},
                        422: {"description": "A field is invalid, or the Idempotency-Key "
                                             "was used with another body."}})
def publish_event(
    body: PublishRequest, app: AppDep, response: Response,
    token: Annotated[ApiToken, Depends(require("events:publish"))],
    idempotency_key: Annotated[str | None, Header(
        max_length=255, description="The same key within 24 h publishes once and returns "
                                    "the first event id; keys are per API token, and a key "
                                    "reused with another body is a 422.")] = None,
) -> dict[str, Any]:
    """Publish an event; answer its id once it is on the queue."""

    def publish() -> str:
        with field_errors({UnknownEvent: "name", InvalidPayload: "data"}):
            return app.publish(body.name, body.data, delay=body.delay)

    if idempotency_key is None:
        return {"event_id": publish(), "duplicate": False}
    event_id, duplicate = publish_once(app.store, idempotency_key, publish, scope=token.id,
                                       request=body.model_dump(mode="json"))
    if duplicate:
        response.status_code = 200
    return {"event_id": event_id, "duplicate": duplicate}
