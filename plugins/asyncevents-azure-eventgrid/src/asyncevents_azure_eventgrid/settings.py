"""The Event Grid sink's own settings, from ``ASYNCEVENTS_EVENTGRID_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from asyncevents import ConfigError

__all__ = ["AZURE_HOSTS", "EventGridSettings"]

#: Event Grid's endpoints in Azure's public, US government and China clouds.
AZURE_HOSTS = ".eventgrid.azure.net,.eventgrid.azure.us,.eventgrid.chinacloudapi.cn"


class EventGridSettings(BaseSettings):
    """Authentication, allowed hosts, TLS trust and timeouts of the Event Grid sink."""

    model_config = SettingsConfigDict(env_prefix="ASYNCEVENTS_EVENTGRID_", extra="ignore")

    auth: Literal["key", "entra"] = Field(
        default="key", description="key: the token is the topic's access key; entra: Entra ID")
    allowed_hosts: str = Field(
        default=AZURE_HOSTS, description="comma-separated host names, or .suffixes")
    ca_file: Path | None = Field(default=None, description="CA bundle to trust instead of the "
                                                           "system's")
    connect_timeout: float = Field(default=5.0, gt=0)
    timeout: float = Field(default=30.0, gt=0, description="read timeout, seconds")

    @property
    def hosts(self) -> tuple[str, ...]:
        """The allowed host names and ``.suffixes``, lower case."""
        return tuple(h.strip().lower() for h in self.allowed_hosts.split(",") if h.strip())

    @classmethod
    def from_env(cls) -> EventGridSettings:
        """Read the environment; a bad value is a one-line ``ConfigError``."""
        try:
            return cls()
        except ValidationError as exc:
            first = exc.errors()[0]
            where = "_".join(str(part) for part in first["loc"]).upper()
            raise ConfigError(
                f"invalid setting ASYNCEVENTS_EVENTGRID_{where}: {first['msg']}") from None
