"""The Pub/Sub sink's own settings, from ``ASYNCEVENTS_PUBSUB_*`` environment variables."""

from __future__ import annotations

from pydantic import AliasChoices, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from asyncevents import ConfigError

__all__ = ["PubSubSettings"]


class PubSubSettings(BaseSettings):
    """Endpoint, emulator and timeout of the Pub/Sub sink."""

    model_config = SettingsConfigDict(env_prefix="ASYNCEVENTS_PUBSUB_", extra="ignore",
                                      populate_by_name=True)

    emulator_host: str | None = Field(
        default=None, description="host:port of an emulator (insecure channel, no credentials)",
        # Google's own variable, as gcloud's emulator commands print it, works too.
        validation_alias=AliasChoices("ASYNCEVENTS_PUBSUB_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST"),
    )
    endpoint: str | None = Field(default=None, description="another API endpoint (regional)")
    timeout: float = Field(default=10.0, gt=0, description="per publish, retries included")

    @classmethod
    def from_env(cls) -> PubSubSettings:
        """Read the environment; a bad value is a one-line ``ConfigError``."""
        try:
            return cls()
        except ValidationError as exc:
            first = exc.errors()[0]
            where = "_".join(str(part) for part in first["loc"]).upper()
            raise ConfigError(
                f"invalid setting ASYNCEVENTS_PUBSUB_{where}: {first['msg']}") from None
