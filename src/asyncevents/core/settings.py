"""Settings: one pydantic-settings model, read once and passed in.

Sources, strongest first: keyword arguments, ``ASYNCEVENTS_*`` environment
variables, then ``asyncevents.toml`` in the working directory (or the file
named by ``ASYNCEVENTS_CONFIG``). A key of that file that no setting reads
is a ``ConfigWarning`` naming the key and the file; a file that is not TOML
is a ``ConfigError`` naming the file and the line.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import tomllib
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from asyncevents.errors import ConfigError, ConfigWarning

__all__ = ["Backoff", "EventDefinition", "Settings", "load_settings", "unknown_keys"]

Backoff = Literal["quadratic", "exponential", "linear", "fixed"]
CONFIG_ENV = "ASYNCEVENTS_CONFIG"
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})(?:\.[A-Za-z0-9_-]{1,63})*\.?$"
)
DEFAULT_CONFIG = "asyncevents.toml"
_MODULE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


class EventDefinition(BaseModel):
    """One entry of the event catalog (``[events."name"]`` in asyncevents.toml)."""

    # ``schema`` in the file; ``json_schema`` here, as BaseModel.schema is taken.
    model_config = ConfigDict(populate_by_name=True)

    description: str = ""
    resolver: str | None = Field(
        default=None, description="'module:function' called with the published data"
    )
    json_schema: dict[str, Any] | None = Field(
        default=None, alias="schema", description="a JSON Schema the published data must match"
    )
    schema_file: str | None = Field(
        default=None, description="a file holding that JSON Schema, relative to asyncevents.toml"
    )
    deprecated: bool = Field(default=False, description="publishing it logs a warning")

    @model_validator(mode="after")
    def _one_schema(self) -> EventDefinition:
        if self.json_schema is not None and self.schema_file is not None:
            raise ValueError("give either schema or schema_file, not both")
        return self


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Everything asyncevents can be configured with.

    ``attempt_deadline`` (``ASYNCEVENTS_ATTEMPT_DEADLINE``, seconds) bounds each
    delivery attempt as a whole; see :attr:`attempt_seconds`.

    ``console_idle_minutes`` (``ASYNCEVENTS_CONSOLE_IDLE_MINUTES``, default 30) and
    ``console_session_hours`` (``ASYNCEVENTS_CONSOLE_SESSION_HOURS``, default 12) are
    the idle and the absolute lifetime of a console session.
    """

    model_config = SettingsConfigDict(
        env_prefix="ASYNCEVENTS_", extra="ignore", validate_default=True,
        # An infinite timeout or back-off loads fine and overflows where it is used.
        allow_inf_nan=False,
    )

    transport_url: str = "sqla+sqlite:///asyncevents-queue.db"
    database_url: str = "sqlite:///asyncevents.db"
    strict_events: bool = True
    events: dict[str, EventDefinition] = Field(default_factory=dict)

    max_deaths: int = Field(default=5, ge=0)
    backoff: Backoff = "quadratic"
    backoff_base: float = Field(default=1.0, gt=0)
    max_backoff: float = Field(default=60.0, gt=0)
    jitter: float = Field(default=0.0, ge=0, le=1)
    max_age: float | None = Field(default=None, gt=0)
    max_retry_after: float = Field(default=3600.0, gt=0)

    allowed_networks: Annotated[list[str], NoDecode] = Field(default_factory=list)
    secret_key: SecretStr | None = None
    disable_plugins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Modules whose @handler functions become python subscriptions when a worker starts.
    handler_modules: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # [routing]: event pattern (optionally "pattern sink") -> named queue (core/events/routing.py).
    routing: dict[str, Any] = Field(default_factory=dict)

    http_connect_timeout: float = Field(default=5.0, gt=0)
    http_timeout: float = Field(default=30.0, gt=0)
    # The total time one attempt may take, whatever the sink or the receiver does
    # (an answer trickled byte by byte, an Expect: 100-continue never answered):
    # past it the attempt ends as a retryable failure and its slot is free again.
    # None: http_connect_timeout + http_timeout + 25 (60 s at the defaults), within
    # the lease receiver protection gives a probe (the same timeouts + 30).
    attempt_deadline: float | None = Field(default=None, gt=0)
    # An egress proxy for the http sink (http://host:port): installations that must
    # leave through a fixed address. The recipient's own address is still checked.
    http_proxy: str | None = Field(default=None, pattern=r"^(|https?://\S+)$")
    # Hours a subscription may fail without a single success before it is disabled.
    disable_after: float = Field(default=120.0, gt=0)
    # The circuit breaker of each subscription: it opens after this many failures in a
    # row, or when this share of at least circuit_min_attempts attempts within
    # circuit_window seconds failed; then one probe every circuit_cooldown seconds.
    circuit_consecutive_failures: int = Field(default=10, ge=1)
    circuit_failure_ratio: float = Field(default=0.9, gt=0, le=1)
    circuit_min_attempts: int = Field(default=20, ge=1)
    circuit_window: float = Field(default=60.0, gt=0)
    circuit_cooldown: float = Field(default=30.0, gt=0)
    response_excerpt_bytes: int = Field(default=1024, ge=0)
    max_payload_bytes: int = Field(default=1_000_000, gt=0)
    event_source: str = "asyncevents"

    queue_prefix: str = Field(default="asyncevents", pattern=r"^[A-Za-z0-9_.-]+$")
    polling_interval: float = Field(default=0.1, gt=0)
    # The SQL queue's lease: a worker renews it every third of it while it holds
    # a message, so this is how soon a crashed worker's messages come back.
    lease_seconds: float = Field(default=10.0, ge=1)
    # RabbitMQ: classic queues (one node) or quorum queues (replicated on a cluster).
    amqp_queue_type: Literal["classic", "quorum"] = "classic"
    # Quorum queues: a message handed out this many times without an ack is dead.
    amqp_delivery_limit: int = Field(default=20, ge=1)
    # The database whose transactional outbox (asyncevents_outbox) workers sweep
    # for events a crash left after their commit: None means database_url, ""
    # turns the sweep off. Set it when the application's database is not the store's.
    outbox_url: str | None = None
    outbox_sweep_seconds: float = Field(default=5.0, gt=0)
    # A console session (kept on the server; logout ends it) ends after this many
    # minutes without a page.
    console_idle_minutes: float = Field(default=30.0, gt=0, le=7 * 24 * 60)
    # A console session ends this many hours after its login however busy it is (or at
    # its token's expiry, if sooner).
    console_session_hours: float = Field(default=12.0, gt=0, le=30 * 24)
    log_level: str = "INFO"
    log_json: bool = False

    @property
    def attempt_seconds(self) -> float:
        """The deadline of one delivery attempt, in seconds: ``attempt_deadline``, or
        one derived from the HTTP timeouts (connect + read + 25 s) when it is unset."""
        if self.attempt_deadline is not None:
            return self.attempt_deadline
        return self.http_connect_timeout + self.http_timeout + 25.0

    @field_validator("allowed_networks", "disable_plugins", "handler_modules", mode="before")
    @classmethod
    def _csv(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("secret_key", mode="before")
    @classmethod
    def _unset_when_blank(cls, value: Any) -> Any:
        # ASYNCEVENTS_SECRET_KEY= (empty, or only spaces) is no key: the same as unset.
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        return None if isinstance(raw, str) and not raw.strip() else value

    @field_validator("allowed_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            if _HOSTNAME.match(entry) and not entry.replace(".", "").isdigit():
                continue  # a host name, allowed by name
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is neither a CIDR nor a host name") from None
        return value

    @field_validator("events")
    @classmethod
    def _schema_files(cls, value: dict[str, EventDefinition]) -> dict[str, EventDefinition]:
        # Relative to asyncevents.toml, wherever the process was started from.
        path = _config_path()
        if path is None:
            return value
        base = path.resolve().parent
        return {name: d.model_copy(update={"schema_file": str(base / d.schema_file)})
                if d.schema_file and not Path(d.schema_file).is_absolute() else d
                for name, d in value.items()}

    @field_validator("handler_modules")
    @classmethod
    def _modules(cls, value: list[str]) -> list[str]:
        for entry in value:
            if not _MODULE.match(entry):
                raise ValueError(f"{entry!r} is not a module name such as 'myshop.handlers'")
        return value

    @field_validator("routing")
    @classmethod
    def _routing(cls, value: dict[str, Any]) -> dict[str, str]:
        from asyncevents.core.events.routing import (
            check_routing,  # it needs the catalog, which needs us
        )

        try:
            return check_routing(value)
        except ValueError as exc:  # the message alone, without pydantic's "Value error, "
            raise PydanticCustomError("routing", str(exc)) from None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Keyword arguments, then the environment, then the TOML file."""
        path = _config_path()
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)


def _config_path() -> Path | None:
    named = os.environ.get(CONFIG_ENV)
    if named:
        path = Path(named)
        if not path.is_file():
            raise ConfigError(f"{CONFIG_ENV} names {named!r}, which is not a file")
        return path
    default = Path(DEFAULT_CONFIG)
    return default if default.is_file() else None


def _read_config(path: Path) -> dict[str, Any]:
    """The TOML document in ``path``; a ``ConfigError`` naming the file (and the line)."""
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message ends with "(at line L, column C)".
        raise ConfigError(f"configuration file {path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"configuration file {path} is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"cannot read the configuration file {path}: {exc.strerror}"
                          ) from None


def _suggestion(key: str, known: list[str]) -> str:
    if key.lower().startswith("asyncevents_"):
        bare = key[len("asyncevents_"):].lower()
        if bare in known:
            return f" (in the file, write it without the prefix, in lower case: {bare!r})"
    close = difflib.get_close_matches(key.lower(), known, n=1, cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown_keys(document: Mapping[str, Any], path: Path | str) -> list[str]:
    """One warning per key of a configuration document that no setting reads.

    Event definitions are looked into too: ``[events.sales.order.created]``
    without quotes makes nested tables that define an event ``sales`` and
    warn, where ``[events."sales.order.created"]`` was meant.
    """
    known = sorted(Settings.model_fields)
    fields = sorted(f.alias or n for n, f in EventDefinition.model_fields.items())
    found: list[str] = []
    for key, value in document.items():
        if key.lower() not in known:
            found.append(f"{path}: unknown key {key!r} is ignored{_suggestion(key, known)}")
            continue
        if key.lower() != "events" or not isinstance(value, Mapping):
            continue
        for name, definition in value.items():
            if not isinstance(definition, Mapping):
                continue  # not a table: the settings' own validation says so
            for field, inner in definition.items():
                if field in fields:
                    continue
                # A table may be a misspelt `schema` as much as an unquoted dotted name.
                hint = _suggestion(field, fields) or (
                    f' (quote a dotted event name: [events."{name}.{field}..."])'
                    if isinstance(inner, Mapping) else "")
                found.append(f"{path}: unknown key {field!r} in [events.{name!r}] is "
                             f"ignored{hint}")
    return found


def load_settings(**overrides: Any) -> Settings:
    """Read the settings, turning any mistake into a one-line ``ConfigError``.

    Keys of the configuration file that no setting reads are each a
    ``ConfigWarning`` (the CLI prints it as one ``warning:`` line).
    """
    path = _config_path()
    if path is not None:
        for message in unknown_keys(_read_config(path), path):
            warnings.warn(message, ConfigWarning, stacklevel=2)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "settings"
        raise ConfigError(f"invalid setting {where}: {first['msg']}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the configuration file {path}: {exc}") from None
    except SettingsError as exc:
        # A malformed JSON value of a structured variable such as ASYNCEVENTS_EVENTS.
        raise ConfigError(str(exc).splitlines()[0]) from None
