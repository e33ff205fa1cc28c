"""asyncevents-mqtt: an MQTT sink for asyncevents.

Installed with pip, found through the ``asyncevents`` entry point group
(``mqtt = "asyncevents_mqtt"``): this module is the plugin, its
``register_sinks`` hook adds the ``mqtt`` sink.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asyncevents import hookimpl
from asyncevents_mqtt.connection import BrokerRefused, Connection
from asyncevents_mqtt.recipient import Target, parse_recipient
from asyncevents_mqtt.settings import MqttSettings
from asyncevents_mqtt.sink import MqttSink

__all__ = ["BrokerRefused", "Connection", "MqttSettings", "MqttSink", "Target",
           "parse_recipient", "register_sinks"]


@hookimpl
def register_sinks(register: Callable[[str, Any], None]) -> None:
    """Register the ``mqtt`` sink."""
    register("mqtt", MqttSink)
