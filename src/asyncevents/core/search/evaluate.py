"""The typed tree as a Python predicate: subscription filters, and the reference
the SQL compiler must agree with.

A record is a mapping with the delivery fields by their query names (``uuid``,
``status``, ``attempts``, ``created``...) and the payload under ``data``; a
subscription filter sees only ``data``.

Payload values at a path: start from the payload; at each key keep the values
of objects that have the key, and replace an array by its elements (one level:
an array directly inside an array is a value that matches nothing but ``*``).
Numeric segments after a key are positions (:attr:`.ir.JsonPath.steps`): each
picks one element of an array (or the key ``"0"`` of an object) before the
result is searched as above.

Wildcards (``*``, ``?``) are matched by :class:`~asyncevents.core.events.glob.Glob`,
in time linear in the value: a filter such as ``note:*a*a*a*a*a*b`` cannot stall
a worker on a long value.

A bare term targets the ``event_name`` column. A subscription filter's record
has it only when the caller passes the event's name (``compile_filter(q,
event_names=True)``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from asyncevents.core.events.glob import Glob
from asyncevents.core.models import Delivery
from asyncevents.core.search.ir import (
    And,
    Column,
    Equals,
    Exists,
    JsonPath,
    Like,
    MatchAll,
    Node,
    Not,
    Or,
    Range,
    Target,
)

__all__ = ["Predicate", "Record", "delivery_record", "json_values", "predicate"]

Record = Mapping[str, Any]
Predicate = Callable[[Record], bool]


_MISSING = object()


def _pick(value: Any, index: int) -> Any:
    """Element ``index`` of an array, key ``"index"`` of an object; ``_MISSING`` otherwise."""
    if isinstance(value, list):
        return value[index] if index < len(value) else _MISSING
    if isinstance(value, dict):
        return value.get(str(index), _MISSING)
    return _MISSING


def json_values(payload: Any, keys: Iterable[str]) -> list[Any]:
    """The values found at ``keys`` in ``payload``, arrays searched at every step.

    A position (``items.0``) picks one element of an array instead of searching it.
    """
    current = [payload]
    for key, indexes in JsonPath(tuple(keys)).steps:
        found: list[Any] = []
        for value in current:
            if isinstance(value, dict) and key in value:
                child = value[key]
                for index in indexes:
                    child = _pick(child, index)
                if child is _MISSING:
                    continue
                if isinstance(child, list):
                    found.extend(child)
                else:
                    found.append(child)
        current = found
    return current


def delivery_record(delivery: Delivery) -> dict[str, Any]:
    """The record of a delivery, as search queries see it."""
    return {
        "uuid": delivery.id, "event_name": delivery.event_name,
        "subscription_id": delivery.subscription_id, "status": delivery.status,
        "sink": delivery.sink, "recipient": delivery.recipient, "attempts": delivery.attempts,
        "created": delivery.created_at, "data": delivery.payload,
    }


def _values(target: Target) -> Callable[[Record], list[Any]]:
    if isinstance(target, JsonPath):
        keys = target.keys
        return lambda record: json_values(record.get("data"), keys)
    name = target.name
    return lambda record: [record.get(name)]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _equals(node: Equals) -> Callable[[Any], bool]:
    text, number, boolean = node.text, node.number, node.boolean

    def test(value: Any) -> bool:
        if isinstance(value, str):
            return value == text
        if isinstance(value, bool):
            return value is boolean
        if _is_number(value) and number is not None:
            return bool(value == number)
        return False

    return test


def _in_range(node: Range) -> Callable[[Any], bool]:
    low, high = node.low, node.high
    bound = low if low is not None else high
    if isinstance(bound, str):
        def kind(value: Any) -> bool:
            return isinstance(value, str)
    elif isinstance(bound, datetime):
        def kind(value: Any) -> bool:
            return isinstance(value, datetime)
    else:
        kind = _is_number

    def test(value: Any) -> bool:
        if not kind(value):
            return False
        if low is not None and not (value >= low if node.include_low else value > low):
            return False
        return high is None or (value <= high if node.include_high else value < high)

    return test


def _leaf(node: Exists | Equals | Like | Range) -> Callable[[Any], bool]:
    if isinstance(node, Exists):
        return lambda value: value is not None
    if isinstance(node, Equals):
        return _equals(node)
    if isinstance(node, Like):
        glob = Glob(node.pieces)
        return lambda value: isinstance(value, str) and glob.match(value)
    return _in_range(node)


def predicate(node: Node) -> Predicate:
    """A function telling whether a record matches ``node``."""
    if isinstance(node, MatchAll):
        return lambda record: True
    if isinstance(node, And):
        parts = [predicate(item) for item in node.items]
        return lambda record: all(part(record) for part in parts)
    if isinstance(node, Or):
        parts = [predicate(item) for item in node.items]
        return lambda record: any(part(record) for part in parts)
    if isinstance(node, Not):
        inner = predicate(node.item)
        return lambda record: not inner(record)
    values, test = _values(node.target), _leaf(node)
    if isinstance(node.target, Column):
        return lambda record: test(values(record)[0])
    return lambda record: any(test(value) for value in values(record))
