"""The NATS sink's own settings, from ``ASYNCEVENTS_NATS_*`` environment variables."""

from __future__ import annotations

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from asyncevents import ConfigError

__all__ = ["NatsSettings"]


class NatsSettings(BaseSettings):
    """Timeouts of the NATS sink."""

    model_config = SettingsConfigDict(env_prefix="ASYNCEVENTS_NATS_", extra="ignore")

    timeout: float = Field(default=5.0, gt=0, description="connect, and wait for the stream's ack")

    @classmethod
    def from_env(cls) -> NatsSettings:
        """Read the environment; a bad value is a one-line ``ConfigError``."""
        try:
            return cls()
        except ValidationError as exc:
            first = exc.errors()[0]
            where = "_".join(str(part) for part in first["loc"]).upper()
            raise ConfigError(
                f"invalid setting ASYNCEVENTS_NATS_{where}: {first['msg']}") from None
