"""The event catalog: which event names exist, how to build their payload, and name patterns.

A pattern is an exact name or holds ``*`` wildcards (``sales.order.*``, ``*``).

The definition that covers a published name (the exact one, else the longest
matching pattern, see :meth:`Catalog.definition`) gives it everything: its
resolver, its JSON Schema (:mod:`.schemas`) and whether it is deprecated. A
schema on ``sales.order.*`` thus checks ``sales.order.created`` too, unless
``sales.order.created`` has a definition of its own, which then decides alone
(without a schema of its own, that name is not checked).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from pydantic import ValidationError

from asyncevents.core.events.patterns import is_pattern, matches
from asyncevents.core.events.schemas import EventSchema, load_schema
from asyncevents.core.log import get_logger
from asyncevents.core.settings import EventDefinition
from asyncevents.errors import ConfigError, UnknownEvent

__all__ = ["OPERATIONAL_EVENTS", "Catalog", "Resolver", "load_resolver"]

Resolver = Callable[[dict[str, Any]], dict[str, Any]]

log = get_logger("asyncevents.catalog")
#: Published names remembered with the definition covering them; cleared when full.
_COVERING_CACHE = 4096


def load_resolver(path: str) -> Resolver:
    """Import ``module:function`` and return the function."""
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"resolver {path!r} must look like 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
        func = getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot load resolver {path!r}: {exc}") from None
    except Exception as exc:  # the module itself fails to import (a syntax error...)
        reason = (str(exc).splitlines() or [""])[0]
        raise ConfigError(f"cannot load resolver {path!r}: {type(exc).__name__}: "
                          f"{reason}") from None
    if not callable(func):
        raise ConfigError(f"resolver {path!r} is not callable")
    return cast(Resolver, func)


MAX_NAME_LENGTH = 255  # the store's event_name column


def _check_shape(name: str) -> None:
    if len(name) > MAX_NAME_LENGTH:
        raise UnknownEvent(f"event name is {len(name)} characters long, "
                           f"at most {MAX_NAME_LENGTH}")
    if any(ch.isspace() or not ch.isprintable() for ch in name):
        raise UnknownEvent(f"event name {name!r} contains spaces or control characters")


OPERATIONAL_EVENTS = {
    "asyncevents.subscription.circuit_opened":
        "A subscription's circuit opened: its deliveries wait until a probe succeeds "
        "(data: subscription_id, recipient, failure_ratio, consecutive_failures, last_error)",
    "asyncevents.subscription.circuit_closed":
        "A subscription's probe succeeded: its deliveries go out again (data: subscription_id, "
        "recipient)",
    "asyncevents.subscription.disabled":
        "A subscription failed without a success for its disable_after hours and was disabled "
        "(data: subscription_id, recipient, failing_since, last_error)",
    "asyncevents.delivery.dead":
        "A delivery ended dead (data: delivery_id, event_id, event_name, subscription_id, "
        "attempts, error)",
}
"""Events asyncevents publishes about itself, always in the catalog, subscribable like any
other; a subscription never receives those about itself."""


@dataclass
class Catalog:
    """Event definitions from asyncevents.toml and from ``register_events`` hooks."""

    definitions: dict[str, EventDefinition]
    strict: bool = True
    schemas: dict[str, EventSchema] = field(init=False, repr=False)
    """The compiled schema of each definition that has one, by definition name."""
    _covering: dict[str, str | None] = field(init=False, repr=False, default_factory=dict)
    _warned: set[str] = field(init=False, repr=False, default_factory=set)

    def __post_init__(self) -> None:
        # Every schema now, once: a wrong one stops start-up, and publish only validates.
        self.schemas = {}
        for name, definition in sorted(self.definitions.items()):
            compiled = load_schema(name, definition.json_schema, definition.schema_file)
            if compiled is not None:
                self.schemas[name] = compiled

    @classmethod
    def build(
        cls, configured: Mapping[str, EventDefinition], registered: Iterable[tuple[str, Any]],
        *, strict: bool,
    ) -> Catalog:
        """Merge code-registered definitions with configured ones (the file wins).

        The operational events (:data:`OPERATIONAL_EVENTS`) are always there.
        """
        definitions: dict[str, EventDefinition] = {
            name: EventDefinition(description=text) for name, text in OPERATIONAL_EVENTS.items()}
        for name, definition in registered:
            if isinstance(definition, EventDefinition):
                definitions[name] = definition
            elif isinstance(definition, Mapping):
                try:
                    definitions[name] = EventDefinition(**definition)
                except ValidationError as exc:
                    first = exc.errors()[0]
                    where = ".".join(str(part) for part in first["loc"])
                    raise ConfigError(f"event {name!r}: {where + ': ' if where else ''}"
                                      f"{first['msg']}") from None
            else:
                definitions[name] = EventDefinition(description=str(definition or ""))
        definitions.update(configured)
        return cls(definitions=definitions, strict=strict)

    def names(self) -> list[str]:
        """Every defined name or pattern, sorted."""
        return sorted(self.definitions)

    def definition(self, name: str) -> EventDefinition | None:
        """The definition covering ``name``: exact first, then the longest pattern."""
        if name in self.definitions:
            return self.definitions[name]
        candidates = [p for p in self.definitions if is_pattern(p) and matches(p, name)]
        if not candidates:
            return None
        return self.definitions[max(candidates, key=len)]

    def _covering_name(self, name: str) -> str | None:
        """The name of the definition covering ``name`` (see :meth:`definition`), cached."""
        try:
            return self._covering[name]
        except KeyError:
            pass
        if name in self.definitions:
            found: str | None = name
        else:
            candidates = [p for p in self.definitions if is_pattern(p) and matches(p, name)]
            found = max(candidates, key=len) if candidates else None
        if len(self._covering) >= _COVERING_CACHE:
            self._covering.clear()  # names published with strict_events off are unbounded
        self._covering[name] = found
        return found

    def check_data(self, name: str, data: Any) -> None:
        """Check published ``data`` against the schema of the definition covering ``name``.

        Raises ``InvalidPayload`` (one line: the event, the path, the rule).
        A deprecated event is logged as a warning, once per name and catalog.
        """
        covering = self._covering_name(name)
        if covering is None:
            return
        if self.definitions[covering].deprecated and name not in self._warned:
            self._warned.add(name)
            log.warning("deprecated event published", event_name=name,
                        definition=covering,
                        description=self.definitions[covering].description or None)
        schema = self.schemas.get(covering)
        if schema is not None:
            schema.check(name, data)

    def _unknown(self, name: str) -> UnknownEvent:
        known = ", ".join(self.names()) or "none defined"
        return UnknownEvent(
            f"unknown event {name!r}; known events: {known} "
            "(define it under [events] in asyncevents.toml or set strict_events = false)"
        )

    def check_publish(self, name: str) -> None:
        """Raise ``UnknownEvent`` when strict and nothing covers ``name``."""
        if not name or not name.strip() or is_pattern(name):
            raise UnknownEvent(f"cannot publish {name!r}: an event name is a plain dotted name")
        _check_shape(name)
        if self.strict and self.definition(name) is None:
            raise self._unknown(name)

    def check_subscribe(self, pattern: str) -> None:
        """Raise ``UnknownEvent`` when strict and ``pattern`` covers no known event."""
        if not pattern or not pattern.strip():
            raise UnknownEvent("an event name or pattern is required")
        _check_shape(pattern)
        if not self.strict or pattern == "*" or pattern in self.definitions:
            return
        if is_pattern(pattern):
            if any(matches(pattern, known) for known in self.definitions):
                return
        elif self.definition(pattern) is not None:
            return
        raise self._unknown(pattern)

    def check_resolvers(self) -> None:
        """Import every resolver the catalog names, so a wrong one stops a worker at start-up.

        Raises ``ConfigError`` naming the event and the resolver's path.
        """
        for name, definition in sorted(self.definitions.items()):
            if definition.resolver is None:
                continue
            try:
                load_resolver(definition.resolver)
            except ConfigError as exc:
                raise ConfigError(f"event {name!r}: {exc}") from None

    def resolver(self, name: str) -> Resolver | None:
        """The resolver for ``name``, if its definition names one."""
        definition = self.definition(name)
        if definition is None or definition.resolver is None:
            return None
        return load_resolver(definition.resolver)
