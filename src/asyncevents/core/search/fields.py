"""The fields a query may name, and the checks on payload paths."""

from __future__ import annotations

import re
from typing import Literal, get_args

from asyncevents.core.models import DeliveryStatus
from asyncevents.core.search.ir import Column, JsonPath
from asyncevents.core.search.values import show
from asyncevents.errors import InvalidQuery

__all__ = ["COLUMNS", "FIELD_LIST", "MAX_PATH_DEPTH", "STATUSES", "SUCCESS", "Mode",
           "resolve_field"]

#: ``search`` queries deliveries; ``filter`` queries a payload (subscription filters).
Mode = Literal["search", "filter"]

COLUMNS: dict[str, Column] = {
    "uuid": Column("uuid", "id", "text"),
    "event_name": Column("event_name", "event_name", "text"),
    "subscription_id": Column("subscription_id", "subscription_id", "text"),
    "status": Column("status", "status", "text"),
    "sink": Column("sink", "sink", "text"),
    "recipient": Column("recipient", "recipient", "text"),
    "attempts": Column("attempts", "attempts", "int"),
    "created": Column("created", "created_at", "datetime"),
}

#: ``success:true`` means ``status:delivered``.
SUCCESS = "success"
STATUSES: tuple[str, ...] = get_args(DeliveryStatus)
FIELD_LIST = ("uuid, event_name, subscription_id, status, success, created, sink, recipient, "
              "attempts, data.<path>")
MAX_PATH_DEPTH = 8

_SEGMENT = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: ``items.-1`` would read as the key "-1" and quietly match no array: refused.
_NEGATIVE = re.compile(r"-[0-9]+")


def _path(name: str, keys: list[str], pos: int | None) -> JsonPath:
    where = f" at position {pos}" if pos is not None else ""
    if not keys or keys == [""]:
        raise InvalidQuery(f"field {show(name)}{where} needs a path, e.g. data.customer.email")
    if len(keys) > MAX_PATH_DEPTH:
        raise InvalidQuery(
            f"field {show(name)}{where} is too deep: at most {MAX_PATH_DEPTH} path segments"
        )
    for key in keys:
        if _NEGATIVE.fullmatch(key):
            raise InvalidQuery(
                f"invalid field {show(name)}{where}: positions count from 0 at the start "
                "(data.items.0); negative positions are not supported"
            )
        if not _SEGMENT.fullmatch(key):
            raise InvalidQuery(
                f"invalid field {show(name)}{where}: path segments are 1-64 letters, digits, "
                "'_' or '-', separated by '.'"
            )
    return JsonPath(tuple(keys))


def resolve_field(name: str, pos: int | None, mode: Mode) -> Column | JsonPath | str:
    """The column, payload path or ``"success"`` that field ``name`` means.

    In ``filter`` mode every field is a payload path: ``data.customer.email``
    and ``customer.email`` are the same.
    """
    if name == "data" or name.startswith("data."):
        return _path(name, name.split(".")[1:], pos)
    if mode == "filter":
        return _path(name, name.split("."), pos)
    if name in COLUMNS:
        return COLUMNS[name]
    if name == SUCCESS:
        return SUCCESS
    where = f" at position {pos}" if pos is not None else ""
    raise InvalidQuery(f"unknown field {show(name)}{where}; fields: {FIELD_LIST}")
