"""asyncevents-sqs: an Amazon SQS sink for asyncevents.

Installed with pip, found through the ``asyncevents`` entry point group
(``sqs = "asyncevents_sqs"``): this module is the plugin, its
``register_sinks`` hook adds the ``sqs`` sink.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asyncevents import hookimpl
from asyncevents_sqs.sink import Queue, SqsSettings, SqsSink, message_size, parse_recipient

__all__ = ["Queue", "SqsSettings", "SqsSink", "message_size", "parse_recipient",
           "register_sinks"]


@hookimpl
def register_sinks(register: Callable[[str, Any], None]) -> None:
    """Register the ``sqs`` sink."""
    register("sqs", SqsSink)
