"""asyncevents-redis: a Redis Streams sink for asyncevents.

Installed with pip, found through the ``asyncevents`` entry point group
(``redis = "asyncevents_redis"``): this module is the plugin, its
``register_sinks`` hook adds the ``redis`` sink.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asyncevents import hookimpl
from asyncevents_redis.sink import RedisSettings, RedisStreamSink, stream_fields

__all__ = ["RedisSettings", "RedisStreamSink", "register_sinks", "stream_fields"]


@hookimpl
def register_sinks(register: Callable[[str, Any], None]) -> None:
    """Register the ``redis`` sink."""
    register("redis", RedisStreamSink)
