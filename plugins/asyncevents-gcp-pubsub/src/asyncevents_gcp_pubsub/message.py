"""What a delivery becomes in Pub/Sub: attributes and the ordering key."""

from __future__ import annotations

import json
from typing import Any

from asyncevents import DeliveryRequest, cloudevent

__all__ = ["ORDERING_KEY_METADATA", "OrderingKeyError", "attributes", "ordering_key"]

#: The subscription metadata key naming the payload path of the ordering key.
ORDERING_KEY_METADATA = "ordering_key"
_MAX_ORDERING_KEY_BYTES = 1024


class OrderingKeyError(ValueError):
    """The subscription's ordering key setting cannot work (a permanent failure)."""


def attributes(request: DeliveryRequest) -> dict[str, str]:
    """The message attributes: the CloudEvent's, ``ce-`` prefixed, and the delivery id.

    ``content-type`` says the data is a structured-mode CloudEvent; ``delivery_id``
    is the same on every attempt, so a subscriber can drop a duplicate.
    """
    event = cloudevent(request)
    found = {f"ce-{name}": str(event[name])
             for name in ("specversion", "id", "source", "type", "time", "datacontenttype")}
    found["content-type"] = "application/cloudevents+json; charset=utf-8"
    found["delivery_id"] = request.delivery_id
    return found


def ordering_key(request: DeliveryRequest) -> str:
    """The ordering key for ``request``: the payload value at the subscription's metadata path.

    The metadata ``{"ordering_key": "data.customer.id"}`` orders the messages
    of one customer; no metadata, or no value at the path, is no ordering key
    (``""``). Strings are used as they are, other values as compact JSON.
    """
    path = request.metadata.get(ORDERING_KEY_METADATA)
    if not path:
        return ""
    if not isinstance(path, str) or not path.startswith("data.") or path == "data.":
        raise OrderingKeyError("the subscription's metadata ordering_key must be a payload path "
                               "such as data.customer.id")
    value: Any = request.payload
    for part in path.split(".")[1:]:
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return ""
    if value is None:
        return ""
    key = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    if len(key.encode()) > _MAX_ORDERING_KEY_BYTES:
        raise OrderingKeyError(f"the ordering key at {path} is over "
                               f"{_MAX_ORDERING_KEY_BYTES} bytes")
    return key
