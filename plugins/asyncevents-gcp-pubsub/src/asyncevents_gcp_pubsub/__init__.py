"""asyncevents-gcp-pubsub: a Google Cloud Pub/Sub sink for asyncevents.

Installed with pip, found through the ``asyncevents`` entry point group
(``pubsub = "asyncevents_gcp_pubsub"``): this module is the plugin, its
``register_sinks`` hook adds the ``pubsub`` sink.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asyncevents import hookimpl
from asyncevents_gcp_pubsub.message import attributes, ordering_key
from asyncevents_gcp_pubsub.recipient import parse_recipient
from asyncevents_gcp_pubsub.settings import PubSubSettings
from asyncevents_gcp_pubsub.sink import PubSubSink, classify

__all__ = ["PubSubSettings", "PubSubSink", "attributes", "classify", "ordering_key",
           "parse_recipient", "register_sinks"]


@hookimpl
def register_sinks(register: Callable[[str, Any], None]) -> None:
    """Register the ``pubsub`` sink."""
    register("pubsub", PubSubSink)
