"""The MQTT sink's own settings, from ``ASYNCEVENTS_MQTT_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from asyncevents import ConfigError

__all__ = ["MqttSettings"]


class MqttSettings(BaseSettings):
    """Protocol version, default user name, TLS trust and timeouts of the MQTT sink."""

    model_config = SettingsConfigDict(env_prefix="ASYNCEVENTS_MQTT_", extra="ignore")

    protocol: Literal["5", "3.1.1"] = Field(default="5", description="MQTT protocol version")
    username: str | None = Field(default=None, description="user when the recipient names none")
    ca_file: Path | None = Field(default=None, description="CA bundle for mqtts:// brokers")
    timeout: float = Field(default=5.0, gt=0, description="connect, and wait for the ack")
    keepalive: int = Field(default=60, ge=5, description="MQTT keep-alive, seconds")

    @classmethod
    def from_env(cls) -> MqttSettings:
        """Read the environment; a bad value is a one-line ``ConfigError``."""
        try:
            return cls()
        except ValidationError as exc:
            first = exc.errors()[0]
            where = "_".join(str(part) for part in first["loc"]).upper()
            raise ConfigError(
                f"invalid setting ASYNCEVENTS_MQTT_{where}: {first['msg']}") from None
