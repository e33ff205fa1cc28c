"""The exceptions asyncevents raises.

Every error a user can cause is an ``AsyncEventsError`` with a one-line message
that says what to fix. The tree::

    AsyncEventsError
    ├── ConfigError            settings or asyncevents.toml are wrong
    ├── UnknownEvent           a name no event definition or pattern covers
    ├── UnknownSink            no installed sink has this name
    ├── InvalidRecipient       the sink refuses the recipient on subscribe
    │   └── UnverifiedRecipient    it cannot be checked now (its host does not resolve):
    │                              accepted with a warning, checked before every delivery
    ├── InvalidPayload         the published data is not a JSON object, or too big
    ├── InvalidQuery           a Lucene query that cannot be parsed or compiled
    ├── NotFound               no subscription or delivery with this id
    ├── StoreError             the database cannot be reached or used
    ├── TransportError         the broker cannot be reached or used
    └── SinkError              raised by a sink while delivering
        ├── RetryableSinkError     try again later (optionally after ``retry_after``)
        └── PermanentSinkError     never try again; the delivery is dead

And the warnings, for what is accepted but worth a look::

    AsyncEventsWarning
    ├── ConfigWarning          asyncevents.toml holds a key that nothing reads
    └── RecipientWarning       a subscription's recipient could not be checked yet
"""

from __future__ import annotations

__all__ = [
    "AsyncEventsError",
    "AsyncEventsWarning",
    "ConfigError",
    "ConfigWarning",
    "InvalidPayload",
    "InvalidQuery",
    "InvalidRecipient",
    "NotFound",
    "PermanentSinkError",
    "RecipientWarning",
    "RetryableSinkError",
    "SinkError",
    "StoreError",
    "TransportError",
    "UnknownEvent",
    "UnknownSink",
    "UnverifiedRecipient",
]


class AsyncEventsError(Exception):
    """Base of every error asyncevents raises on purpose.

    ``field`` names the input at fault when there is one (``recipient``,
    ``filter``...), so an interface can point at it in its own words.
    """

    def __init__(self, *args: object, field: str | None = None) -> None:
        super().__init__(*args)
        self.field = field


class ConfigError(AsyncEventsError):
    """The settings or the configuration file are invalid."""


class UnknownEvent(AsyncEventsError):
    """An event name that no definition or pattern in the catalog covers."""


class UnknownSink(AsyncEventsError):
    """No installed sink plugin has this name."""


class InvalidRecipient(AsyncEventsError):
    """A sink refused a recipient (bad URL, bad ARN, forbidden address...)."""


class UnverifiedRecipient(InvalidRecipient):
    """The sink cannot check the recipient right now (its host name does not resolve).

    A sink's ``validate_recipient`` raises it for what may only be a passing
    state (DNS down, a split-horizon name): the subscription is accepted with
    a warning, and the sink checks the recipient again before every delivery.
    """


class AsyncEventsWarning(UserWarning):
    """Base of the warnings asyncevents issues: accepted, but worth a look."""


class ConfigWarning(AsyncEventsWarning):
    """The configuration file holds a key that no setting reads (a typo, most often)."""


class RecipientWarning(AsyncEventsWarning):
    """A subscription was stored although its recipient could not be checked yet."""


class InvalidPayload(AsyncEventsError):
    """Published data that is not a JSON object, or larger than allowed."""


class InvalidQuery(AsyncEventsError):
    """A Lucene query that cannot be parsed or compiled."""


class NotFound(AsyncEventsError):
    """No subscription or delivery has this id."""


class StoreError(AsyncEventsError):
    """The database cannot be reached, or its schema is missing."""


class TransportError(AsyncEventsError):
    """The message broker cannot be reached or refused a message."""


class SinkError(AsyncEventsError):
    """Raised by a sink while it delivers."""


class RetryableSinkError(SinkError):
    """A failure worth retrying; ``retry_after`` (seconds) overrides the back-off."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentSinkError(SinkError):
    """A failure that no retry can fix; the delivery becomes dead."""
