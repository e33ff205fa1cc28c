"""Request and response bodies of the REST API (they make its OpenAPI document)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

__all__ = [
    "Attempt",
    "Catalog",
    "Circuit",
    "Delivery",
    "DeliveryPage",
    "EventDefinition",
    "Health",
    "Label",
    "Name",
    "PublishRequest",
    "PublishResult",
    "Query",
    "Recipient",
    "ReplayQuery",
    "ReplayResult",
    "Scope",
    "Secret",
    "SinkList",
    "SinkName",
    "Subscription",
    "SubscriptionCreate",
    "SubscriptionPage",
    "SubscriptionSaved",
    "SubscriptionUpdate",
    "Token",
    "TokenCreate",
    "TokenCreated",
    "TokenRotation",
    "Trace",
]


def _no_nul(value: str) -> str:
    # PostgreSQL refuses NUL in text columns; say so here rather than as a database error.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


Name = Annotated[str, Field(min_length=1, max_length=255), AfterValidator(_no_nul)]
"""An event name or pattern."""
Recipient = Annotated[str, Field(min_length=1, max_length=2048), AfterValidator(_no_nul)]
"""Where a sink delivers."""
Secret = Annotated[str, Field(min_length=1, max_length=1024), AfterValidator(_no_nul)]
"""A verification token."""
SinkName = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_no_nul)]
"""The name of an installed sink."""
Query = Annotated[str, Field(max_length=4096), AfterValidator(_no_nul)]
"""A Lucene query (empty: everything)."""
Label = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_no_nul)]
"""A short human name."""

Scope = Literal["subscriptions:read", "subscriptions:write", "events:publish",
                "deliveries:read", "deliveries:replay", "admin"]
JsonObject = dict[str, Any]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


HeaderMap = dict[Annotated[str, Field(max_length=128)], Annotated[str, Field(max_length=4096)]]
"""Extra headers by name."""


class _Protection(_Strict):
    """The receiver protection options, checked by the core's SubscriptionRules."""

    rate: str | None = Field(default=None, max_length=32, examples=["10/s", "30/m"],
                             description="At most N deliveries a second (`N/s`) or a minute "
                                         "(`N/m`), across every worker.")
    max_in_flight: int | None = Field(default=None, description="At most this many "
                                      "deliveries in flight at once, across every worker.")
    ordering_key: str | None = Field(default=None, max_length=255,
                                     examples=["data.customer_id"],
                                     description="Deliveries with the same value at this "
                                                 "payload path go one at a time, in order.")
    signature: Literal["hmac", "ed25519"] | None = Field(
        default=None, description="`hmac` (Standard Webhooks v1, the default) or `ed25519` "
                                  "(v1a; receivers verify with `public_key`).")
    headers: HeaderMap | None = Field(default=None, description="Sent with every delivery; "
                                      "never the signature, content or connection headers.")
    disable_after: float | None = Field(default=None, description="Hours failing without a "
                                        "success before the subscription is disabled "
                                        "(default: ASYNCEVENTS_DISABLE_AFTER).")


class SubscriptionCreate(_Protection):
    """A new subscription. The verification token is write-only."""

    event_name: Name = Field(description="An event name or pattern (`sales.order.*`).")
    recipient: Recipient = Field(description="Where to deliver: a URL for the http sink.")
    verification_token: Secret | None = Field(
        default=None,
        description="The secret that signs deliveries (`whsec_...` or any string). "
                    "Never returned. Required for a sink that signs (`http`); a sink that "
                    "does not (`eventbridge`) needs none.")
    sink: SinkName = "http"
    filter: Query | None = Field(default=None,
                                      description="A Lucene query over the payload.")
    retry_policy: JsonObject | None = Field(
        default=None, description="Overrides of the global retry policy, e.g. {max_deaths: 3}.")
    metadata: JsonObject | None = None


class SubscriptionUpdate(_Protection):
    """Fields to change; those left out stay as they are (an option set to null is unset)."""

    active: bool | None = None
    recipient: Recipient | None = None
    verification_token: Secret | None = Field(
        default=None, description="A new verification token (rotation). Never returned.")
    filter: Query | None = Field(default=None, description="null removes the filter.")
    retry_policy: JsonObject | None = Field(default=None,
                                            description="null returns to the global policy.")
    metadata: JsonObject | None = None


class TokenRotation(_Strict):
    """A new verification token, and how long the current one still signs too."""

    verification_token: Secret = Field(description="The new token. Never returned.")
    grace: str | float = Field(default="24h", description="`24h`, `30m`, `90s`, `2d` or "
                               "seconds (at most 30 days; 0: the old token stops now).")


class Circuit(BaseModel):
    """A subscription's circuit breaker (``GET /v1/subscriptions/{id}/circuit``)."""

    state: str = Field(description="`closed` (delivering) or `open` (deliveries wait for a "
                                   "probe after the cool-down).")
    failure_ratio: float | None = Field(description="Failed share of the recent attempts.")
    consecutive_failures: int
    last_error: str | None
    last_error_at: str | None
    last_success_at: str | None
    failing_since: str | None
    opened_at: str | None


class Subscription(BaseModel):
    """A subscription as the API shows it (never with its token)."""

    id: str
    event_name: str
    sink: str
    recipient: str
    active: bool
    filter: str | None
    retry_policy: JsonObject | None
    metadata: JsonObject
    rate: str | None = None
    max_in_flight: int | None = None
    ordering_key: str | None = None
    signature: str = "hmac"
    public_key: str | None = Field(default=None, description="`whpk_...`: what receivers "
                                   "verify `ed25519` signatures with.")
    headers: dict[str, str] = Field(default_factory=dict, description="Extra headers; values "
                                    "of secret-looking ones (auth, token, key...) show `***`.")
    disable_after: float | None = None
    rotation_grace_until: str | None = Field(default=None, description="Until then, deliveries "
                                          "also carry the signature of the rotated token.")
    created_at: str
    updated_at: str


class SubscriptionSaved(Subscription):
    """A subscription just created or changed, with what its checks warned about."""

    warnings: list[str] = Field(
        default_factory=list,
        description="Accepted, but worth a look: e.g. a recipient host that does not "
                    "resolve now (it is checked again before every delivery).")


class SubscriptionPage(BaseModel):
    """One page of subscriptions, oldest first; pass ``next_cursor`` back for more."""

    items: list[Subscription]
    next_cursor: str | None


class EventDefinition(BaseModel):
    """One entry of the event catalog."""

    name: str
    description: str
    resolver: str | None
    pattern: bool


class Catalog(BaseModel):
    """The event catalog."""

    strict: bool
    events: list[EventDefinition]


class PublishRequest(_Strict):
    """An event to publish."""

    name: Name = Field(description="The event name, e.g. `sales.order.created`.")
    data: JsonObject = Field(default_factory=dict, description="The payload, a JSON object.")
    delay: float | None = Field(default=None, ge=0, le=30 * 86400,
                                description="Dispatch no earlier than this many seconds.")


class PublishResult(BaseModel):
    """The published event's id; ``duplicate`` when an Idempotency-Key was seen before."""

    event_id: str
    duplicate: bool = False


class Delivery(BaseModel):
    """One event's copy for one subscription."""

    uuid: str
    event_id: str
    event_name: str
    subscription_id: str
    sink: str
    recipient: str
    status: Literal["pending", "retrying", "delivered", "dead"]
    success: bool
    attempts: int
    created: str | None
    updated: str | None
    published_at: str | None
    next_attempt_at: str | None
    data: JsonObject


class DeliveryPage(BaseModel):
    """One page of matching deliveries, newest first; pass ``next_cursor`` back for more."""

    items: list[Delivery]
    next_cursor: str | None


class Attempt(BaseModel):
    """One try at delivering."""

    number: int
    started_at: str | None
    success: bool
    status_code: int | None
    duration_ms: float
    response: str
    error: str | None
    replay: bool


class Trace(BaseModel):
    """A delivery with every attempt, as ``asyncevents trace --json`` prints it."""

    uuid: str
    event_id: str
    event_name: str
    subscription_id: str
    sink: str
    recipient: str
    status: str
    success: bool
    created: str | None
    next_attempt_at: str | None
    first_attempt_at: str | None
    last_attempt_at: str | None
    data: JsonObject
    attempts: list[Attempt]


class ReplayQuery(_Strict):
    """Replay every delivery matching a Lucene query."""

    q: Query = Field(min_length=1, description="e.g. `status:dead AND event_name:sales.*`")
    dry_run: bool = False
    max: int = Field(default=10_000, ge=1, le=100_000,
                     description="Refuse (and replay nothing) when more deliveries match.")


class ReplayResult(BaseModel):
    """How many deliveries were (or, on a dry run, would be) replayed."""

    matched: int
    replayed: int


class TokenCreate(_Strict):
    """A new API token; with ``expires_in`` or ``expires_at`` it is refused from then on."""

    name: Label
    scopes: list[Scope] = Field(min_length=1)
    expires_in: Annotated[str, Field(max_length=32)] | int | None = Field(
        default=None, description="`90d`, `12h`, `30m`, `2w` or seconds from now (at most "
                                  "3660 days).", examples=["90d"])
    expires_at: AwareDatetime | None = Field(
        default=None, description="When the token expires (ISO 8601 with a zone, in the "
                                  "future). Give this or `expires_in`, not both.")


class Token(BaseModel):
    """An API token, without its secret."""

    id: str
    name: str
    prefix: str
    scopes: list[str]
    created_at: str
    last_used_at: str | None
    revoked_at: str | None
    expires_at: str | None = Field(description="When it is refused from (null: never).")
    status: Literal["active", "expired", "revoked"]


class TokenCreated(Token):
    """A new API token with its secret, shown this once."""

    token: str


class Health(BaseModel):
    """Whether the database and the transport answer."""

    status: Literal["ok", "unavailable"]
    checks: dict[str, str]


class SinkList(BaseModel):
    """Installed sinks, plugins not loaded for want of an extra, and plugins that failed."""

    sinks: list[dict[str, str]]
    unavailable: list[dict[str, str]] = Field(
        default_factory=list, description="Plugins whose distribution's extra is not "
        "installed: `needs` is what to install (`asyncevents[aws]`), `missing` the module.")
    failed: list[dict[str, str]]
