"""asyncevents-nats: a NATS JetStream sink for asyncevents.

Installed with pip, found through the ``asyncevents`` entry point group
(``nats = "asyncevents_nats"``): this module is the plugin, its
``register_sinks`` hook adds the ``nats`` sink.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asyncevents import hookimpl
from asyncevents_nats.loop import LoopThread
from asyncevents_nats.recipient import Target, parse_recipient
from asyncevents_nats.settings import NatsSettings
from asyncevents_nats.sink import NatsSink, message_headers

__all__ = ["LoopThread", "NatsSettings", "NatsSink", "Target", "message_headers",
           "parse_recipient", "register_sinks"]


@hookimpl
def register_sinks(register: Callable[[str, Any], None]) -> None:
    """Register the ``nats`` sink."""
    register("nats", NatsSink)
