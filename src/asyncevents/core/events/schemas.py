"""Event schemas: the JSON Schema an event definition may give its data.

A definition carries ``schema = {...}`` inline or ``schema_file = "..."``
(relative to asyncevents.toml). Each is loaded and compiled once, when the
catalog is built: a schema that is not valid JSON Schema, or a file that is
missing or not JSON, is a ``ConfigError`` naming the event and the file.
Publishing then checks the data against the compiled validator, and data
that does not match is an ``InvalidPayload`` of one line naming the event,
the path into the data and the rule (``sales.order.created: data.total: -1
is less than the minimum of 0``).

The dialect is the schema's ``$schema``, Draft 2020-12 without one.
``format`` is an annotation, as the specification has it, not checked.
``$ref`` may only point into the same document (``#/$defs/...``): nothing is
ever fetched while publishing.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, best_match
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for
from referencing import Registry

from asyncevents.errors import ConfigError, InvalidPayload

__all__ = ["EventSchema", "data_path", "load_schema"]

#: At most this many characters of the rule, so the error stays one short line.
MAX_RULE = 160
_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def data_path(parts: Iterator[str | int] | Any) -> str:
    """``data.items[0].sku`` for the path ``["items", 0, "sku"]`` into the published data."""
    text = "data"
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _PLAIN_KEY.match(part):
            text += f".{part}"
        else:
            text += f"[{json.dumps(part, ensure_ascii=False)}]"
    return text


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_RULE else text[: MAX_RULE - 1] + "…"


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key in ("$ref", "$dynamicRef") and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _pointer_target(schema: Any, ref: str) -> bool:
    """True when the local reference ``#/a/b`` names something in ``schema``."""
    if not ref.startswith("#/"):
        return True  # "#" itself, or an anchor: the validator resolves those
    node = schema
    for raw in ref[2:].split("/"):
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False
    return True


class EventSchema:
    """One event definition's JSON Schema, compiled once; :meth:`check` is the hot path."""

    __slots__ = ("_validator", "schema", "source")

    def __init__(self, schema: Mapping[str, Any], source: str = "inline schema") -> None:
        """Check and compile ``schema``; raise ``ValueError`` saying what is wrong with it.

        ``source`` says where it came from, for messages: the file, or "inline schema".
        """
        if not isinstance(schema, Mapping):
            raise ValueError(f"a JSON Schema is a JSON object, not {type(schema).__name__}")
        self.schema = dict(schema)
        self.source = source
        cls: type[Validator] = validator_for(self.schema, default=Draft202012Validator)
        try:
            cls.check_schema(self.schema)
        except SchemaError as exc:
            where = "/".join(str(p) for p in exc.absolute_path)
            raise ValueError(f"not a valid JSON Schema: {_short(exc.message)}"
                             + (f" (at {where})" if where else "")) from None
        for ref in _refs(self.schema):
            if not ref.startswith("#"):
                raise ValueError(f"$ref {ref!r} points outside the schema; only references "
                                 "into the same document (#/$defs/...) are supported")
            if not _pointer_target(self.schema, ref):
                raise ValueError(f"$ref {ref!r} points to nothing in the schema")
        # An empty registry: a reference is never looked up over the network.
        self._validator = cls(self.schema, registry=Registry())

    def check(self, name: str, data: Any) -> None:
        """Raise ``InvalidPayload`` (one line: event, path, rule) unless ``data`` matches."""
        errors = self._validator.iter_errors(data)
        first = next(errors, None)
        if first is None:
            return
        error = best_match(itertools.chain([first], errors))
        raise InvalidPayload(f"{name}: {data_path(error.absolute_path)}: {_short(error.message)}",
                             field="data")


def load_schema(name: str, schema: Mapping[str, Any] | None,
                schema_file: str | None) -> EventSchema | None:
    """The compiled schema of event ``name`` (inline or from its file), or None without one.

    Raises ``ConfigError`` naming the event (and the file) when the file is
    missing, unreadable or not JSON, or the schema is not valid JSON Schema.
    """
    if schema is None and schema_file is None:
        return None
    source = "inline schema"
    if schema_file is not None:
        path = Path(schema_file)
        source = f"schema file {path}"
        try:
            schema = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"event {name!r}: schema file {path} does not exist") from None
        except OSError as exc:
            raise ConfigError(f"event {name!r}: cannot read schema file {path}: "
                              f"{exc.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"event {name!r}: schema file {path} is not UTF-8 text") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"event {name!r}: schema file {path} is not JSON: {exc.msg} "
                              f"at line {exc.lineno}, column {exc.colno}") from None
    assert schema is not None
    try:
        return EventSchema(schema, source)
    except ValueError as exc:
        raise ConfigError(f"event {name!r}: {source}: {exc}") from None
