"""The retry policy: how many deaths a delivery may have and how long each wait is."""

from __future__ import annotations

import random
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from asyncevents.core.settings import Backoff, Settings
from asyncevents.errors import ConfigError

__all__ = ["RetryPolicy"]


class RetryPolicy(BaseModel):
    """Global retry settings, overridable per subscription.

    The default reproduces Magento's ``min(60, deaths²)``: retries after 1, 4,
    9, 16 and 25 seconds, then the delivery is dead.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_deaths: int = Field(default=5, ge=0)
    backoff: Backoff = "quadratic"
    base: float = Field(default=1.0, gt=0)
    max_backoff: float = Field(default=60.0, gt=0)
    jitter: float = Field(default=0.0, ge=0, le=1)
    max_age: float | None = Field(default=None, gt=0)

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        """The global policy."""
        return cls(
            max_deaths=settings.max_deaths, backoff=settings.backoff, base=settings.backoff_base,
            max_backoff=settings.max_backoff, jitter=settings.jitter, max_age=settings.max_age,
        )

    def override(self, overrides: dict[str, Any] | None) -> RetryPolicy:
        """This policy with a subscription's overrides applied."""
        if not overrides:
            return self
        return self.model_validate({**self.model_dump(), **overrides})

    @classmethod
    def check_overrides(cls, overrides: dict[str, Any]) -> dict[str, Any]:
        """Validate a subscription's overrides; a ``ConfigError`` names the bad field."""
        try:
            cls.model_validate(overrides)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ConfigError(f"invalid retry policy field {where!r}: {first['msg']}") from None
        return overrides

    def delay(self, deaths: int) -> float:
        """Seconds to wait after the ``deaths``-th failure (1-based)."""
        n = max(deaths, 1)
        if self.backoff == "quadratic":
            raw = self.base * n * n
        elif self.backoff == "exponential":
            raw = self.base * 2.0 ** min(n - 1, 60)
        elif self.backoff == "linear":
            raw = self.base * n
        else:
            raw = self.base
        wait = min(self.max_backoff, raw)
        if self.jitter:
            # Subtractive jitter keeps max_backoff a true ceiling.
            wait -= wait * self.jitter * random.random()
        return wait

    def gives_up(self, deaths: int, age_seconds: float) -> bool:
        """True when a delivery with ``deaths`` failures and this age must die."""
        if deaths > self.max_deaths:
            return True
        return self.max_age is not None and age_seconds >= self.max_age
