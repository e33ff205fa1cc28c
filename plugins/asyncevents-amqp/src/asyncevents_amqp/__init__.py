"""asyncevents-amqp: an AMQP 0-9-1 (RabbitMQ) sink for asyncevents.

Installed with pip, found through the ``asyncevents`` entry point group
(``amqp = "asyncevents_amqp"``): this module is the plugin, its
``register_sinks`` hook adds the ``amqp`` sink.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asyncevents import hookimpl
from asyncevents_amqp.pool import Publisher, PublisherPool, Unroutable
from asyncevents_amqp.recipient import Target, parse_recipient
from asyncevents_amqp.settings import AmqpSettings
from asyncevents_amqp.sink import AmqpSink, classify, message_headers

__all__ = ["AmqpSettings", "AmqpSink", "Publisher", "PublisherPool", "Target", "Unroutable",
           "classify", "message_headers", "parse_recipient", "register_sinks"]


@hookimpl
def register_sinks(register: Callable[[str, Any], None]) -> None:
    """Register the ``amqp`` sink."""
    register("amqp", AmqpSink)
