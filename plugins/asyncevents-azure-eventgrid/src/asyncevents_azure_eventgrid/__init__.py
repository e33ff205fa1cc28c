"""asyncevents-azure-eventgrid: an Azure Event Grid sink for asyncevents.

Installed with pip, found through the ``asyncevents`` entry point group
(``eventgrid = "asyncevents_azure_eventgrid"``): this module is the plugin,
its ``register_sinks`` hook adds the ``eventgrid`` sink.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asyncevents import hookimpl
from asyncevents_azure_eventgrid.recipient import parse_recipient
from asyncevents_azure_eventgrid.settings import EventGridSettings
from asyncevents_azure_eventgrid.sink import EventGridSink, classify

__all__ = ["EventGridSettings", "EventGridSink", "classify", "parse_recipient",
           "register_sinks"]


@hookimpl
def register_sinks(register: Callable[[str, Any], None]) -> None:
    """Register the ``eventgrid`` sink."""
    register("eventgrid", EventGridSink)
