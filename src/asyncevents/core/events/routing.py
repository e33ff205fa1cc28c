"""Routing: which named queue an event's messages travel on (``[routing]`` in asyncevents.toml).

::

    [routing]
    "sales.order.* http" = "webhooks"   # deliveries of sales.order.* through the http sink
    "sales.order.*" = "critical"        # the trigger and every other delivery of sales.order.*
    "reports.*" = "bulk"

A key is an event pattern (an exact name, or with ``*`` wildcards as in
subscriptions; at most 256 characters and 16 ``*``), optionally followed by a
space and a sink name. A value is a
queue name: lower-case letters, digits, ``-`` and ``_``, at most 40
characters, not one of :data:`RESERVED` (the transports use those words in
their own queue names). Whatever no rule covers uses ``default``.

- An event's trigger message (its dispatch) goes to the queue of the first
  rule *without* a sink that matches its name, decided at publish.
- Each of its delivery messages goes to the queue of the first rule that
  matches its name and the subscription's sink, decided at dispatch: rules
  naming a sink are tried before those that do not, and among each, file
  order decides.
- A retry goes back to the queue its message came from (the message carries
  its queue).

On RabbitMQ and the SQL queue the ``default`` queue keeps the names it always
had (``<prefix>.trigger``, ``<prefix>.deliver``); a named queue ``Q`` is
``<prefix>.Q.trigger`` and ``<prefix>.Q.deliver`` (see
:class:`~asyncevents.core.transport.topology.Topology`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from asyncevents.core.events.glob import check_pattern, pieces_of
from asyncevents.core.events.patterns import matches
from asyncevents.core.messages import DEFAULT_QUEUE
from asyncevents.errors import ConfigError

__all__ = ["DEFAULT_QUEUE", "RESERVED", "Router", "Rule", "all_queues", "check_queue_name",
           "check_routing", "parse_queues"]

#: Words a queue may not be named: the transports' queue names use them.
RESERVED = frozenset({"trigger", "deliver", "delay", "dead"})
_QUEUE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
_SINK = re.compile(r"^[A-Za-z0-9_.-]+$")
# Routing decisions remembered per (event name, sink); cleared when full.
_CACHE = 4096


def check_queue_name(name: str) -> str:
    """``name`` if it can name a queue, else ``ValueError`` saying what is wrong."""
    if not _QUEUE.match(name):
        raise ValueError(f"{name!r} is not a queue name (lower-case letters, digits, '-' "
                         "and '_', at most 40 characters)")
    if name in RESERVED:
        raise ValueError(f"{name!r} cannot name a queue (reserved: "
                         f"{', '.join(sorted(RESERVED))})")
    return name


@dataclass(frozen=True)
class Rule:
    """One ``[routing]`` entry: events matching ``pattern`` (and ``sink``) go to ``queue``."""

    pattern: str
    sink: str | None
    queue: str

    def covers(self, name: str, sink: str | None) -> bool:
        """True when this rule routes event ``name`` (delivered through ``sink``, if any)."""
        if self.sink is not None and self.sink != sink:
            return False
        return matches(self.pattern, name)


def _rule(key: str, value: Any) -> Rule:
    if not isinstance(value, str):
        kind = "table" if isinstance(value, Mapping) else type(value).__name__
        raise ValueError(f"routing rule {key!r} must name a queue (a string), not a {kind}")
    parts = key.split()
    if len(parts) not in (1, 2) or key != " ".join(parts):
        raise ValueError(f"routing key {key!r} must be an event pattern, optionally followed "
                         "by one space and a sink name ('sales.order.* http')")
    if len(parts) == 2 and not _SINK.match(parts[1]):
        raise ValueError(f"routing key {key!r}: {parts[1]!r} is not a sink name")
    try:
        check_pattern(pieces_of(parts[0]))
    except ValueError as exc:
        raise ValueError(f"routing key {key[:60]!r}: {exc}") from None
    try:
        queue = check_queue_name(value)
    except ValueError as exc:
        raise ValueError(f"routing rule {key!r}: {exc}") from None
    return Rule(parts[0], parts[1] if len(parts) == 2 else None, queue)


def check_routing(routing: Mapping[str, Any]) -> dict[str, str]:
    """The ``[routing]`` table, checked; ``ValueError`` names the first bad entry."""
    return {key: _rule(key, value).queue for key, value in routing.items()}


def parse_queues(text: str) -> list[str]:
    """``--queues critical,default`` as a list; ``ConfigError`` on a bad or repeated name."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise ConfigError("--queues needs at least one queue name, such as 'critical,default'")
    for name in names:
        try:
            check_queue_name(name)
        except ValueError as exc:
            raise ConfigError(f"--queues: {exc}") from None
    if len(set(names)) != len(names):
        raise ConfigError(f"--queues names a queue twice: {text!r}")
    return names


class Router:
    """Decides the queue of each message from the ``[routing]`` rules."""

    def __init__(self, routing: Mapping[str, str] | None = None) -> None:
        rules = [_rule(key, value) for key, value in (routing or {}).items()]
        self._in_file_order = rules
        # Rules naming a sink first; file order otherwise (sorted() is stable).
        self.rules = sorted(rules, key=lambda rule: rule.sink is None)
        self._cache: dict[tuple[str, str | None], str] = {}

    @property
    def queues(self) -> list[str]:
        """Every queue the rules name, in file order, then ``default``."""
        found: list[str] = []
        for rule in self._in_file_order:
            if rule.queue not in found:
                found.append(rule.queue)
        if DEFAULT_QUEUE not in found:
            found.append(DEFAULT_QUEUE)
        return found

    def _find(self, name: str, sink: str | None) -> str:
        key = (name, sink)
        found = self._cache.get(key)
        if found is None:
            found = next((rule.queue for rule in self.rules if rule.covers(name, sink)),
                         DEFAULT_QUEUE)
            if len(self._cache) >= _CACHE:
                self._cache.clear()
            self._cache[key] = found
        return found

    def trigger_queue(self, name: str) -> str:
        """The queue of event ``name``'s trigger message (rules without a sink only)."""
        return self._find(name, None) if self.rules else DEFAULT_QUEUE

    def deliver_queue(self, name: str, sink: str) -> str:
        """The queue of a delivery of event ``name`` through ``sink``."""
        return self._find(name, sink) if self.rules else DEFAULT_QUEUE


def all_queues(routing: Mapping[str, str] | None, wanted: Sequence[str] | None = None
               ) -> list[str]:
    """The queues a worker consumes: ``wanted`` (``--queues``), else every routed one."""
    return list(wanted) if wanted else Router(routing).queues
