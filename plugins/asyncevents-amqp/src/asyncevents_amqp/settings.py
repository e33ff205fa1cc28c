"""The AMQP sink's own settings, from ``ASYNCEVENTS_AMQP_SINK_*`` environment variables.

The prefix is not ``ASYNCEVENTS_AMQP_``: the core already uses
``ASYNCEVENTS_AMQP_QUEUE_TYPE`` for its own RabbitMQ transport.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from asyncevents import ConfigError

__all__ = ["AmqpSettings"]


class AmqpSettings(BaseSettings):
    """Timeouts, routing strictness and TLS trust of the AMQP sink."""

    model_config = SettingsConfigDict(env_prefix="ASYNCEVENTS_AMQP_SINK_", extra="ignore")

    timeout: float = Field(default=5.0, gt=0, description="connect, and wait for the confirm")
    mandatory: bool = Field(default=True, description="a message no queue takes is a failure")
    ca_file: Path | None = Field(default=None, description="CA bundle for amqps:// brokers")
    max_idle: int = Field(default=8, ge=0, description="idle connections kept per broker")

    @classmethod
    def from_env(cls) -> AmqpSettings:
        """Read the environment; a bad value is a one-line ``ConfigError``."""
        try:
            return cls()
        except ValidationError as exc:
            first = exc.errors()[0]
            where = "_".join(str(part) for part in first["loc"]).upper()
            raise ConfigError(
                f"invalid setting ASYNCEVENTS_AMQP_SINK_{where}: {first['msg']}") from None
