"""A handler that a plugin's ``register_handlers`` hook declares (tests/test_handlers.py)."""

from __future__ import annotations

from asyncevents import Event, handler

SEEN: list[Event] = []


@handler("plugin.thing.*")
def from_plugin(event: Event) -> None:
    """Records what it gets."""
    SEEN.append(event)


def not_a_handler(event: Event) -> None:
    """No @handler: registering it is refused."""
