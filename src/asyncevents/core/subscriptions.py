"""Subscription rules: every check a subscription passes before it is stored or changed.

One place for the CLI, the Python API (``App.subscribe``,
``App.update_subscription``) and the REST API. A refused value raises one of
asyncevents' own errors with ``field`` set to the input at fault:

==================  ============================================================
``event_name``      ``UnknownEvent``: empty, malformed, or unknown in strict mode
``sink``            ``UnknownSink``: no installed sink has this name; ``ConfigError``
                    for ``python``, whose subscriptions come from ``@handler`` only
``recipient``       ``InvalidRecipient``: the sink refuses it (the SSRF guard for
                    http); ``ConfigError`` when emptied by an update
``token``           ``ConfigError``: empty, only whitespace, or a ``whsec_`` token
                    that is not base64
``filter``          ``InvalidQuery``: not a valid Lucene filter
``retry_policy``    ``ConfigError``: an unknown or invalid override
``active``          ``ConfigError``: neither true nor false
==================  ============================================================

A recipient the sink cannot check yet (``UnverifiedRecipient``: an http
host name that does not resolve right now) is accepted with a warning; the
sink checks it again before every delivery. Inside ``collect_warnings()``
the warnings are gathered for the caller to show (the REST API's
``warnings`` field, a line on the CLI's stderr); elsewhere they are issued
as ``RecipientWarning`` with :func:`warnings.warn`.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from asyncevents.core.catalog import Catalog
from asyncevents.core.handlers import PYTHON_SINK
from asyncevents.core.models import Subscription
from asyncevents.core.plugins import Plugins
from asyncevents.core.retry import RetryPolicy
from asyncevents.core.search import compile_filter
from asyncevents.core.settings import Settings
from asyncevents.core.sink import signing_key
from asyncevents.errors import (
    AsyncEventsError,
    ConfigError,
    InvalidQuery,
    InvalidRecipient,
    RecipientWarning,
    UnknownEvent,
    UnknownSink,
    UnverifiedRecipient,
)

__all__ = ["CHANGEABLE", "SubscriptionRules", "collect_warnings"]

CHANGEABLE = ("active", "recipient", "token", "filter", "retry_policy", "metadata")
"""The fields an update may change, in the order they are checked."""


# The list that warnings go to in this context (a request, a CLI command), if any.
_collector: ContextVar[list[str] | None] = ContextVar("asyncevents_subscription_warnings",
                                                      default=None)


@contextmanager
def collect_warnings() -> Iterator[list[str]]:
    """Gather the warnings of subscriptions checked inside, instead of ``warnings.warn``.

    Context-local, so concurrent requests each get their own::

        with collect_warnings() as found:
            sub = app.subscribe(...)
        # found == ["host 'hooks.example' does not resolve (...); ..."] or []
    """
    found: list[str] = []
    token = _collector.set(found)
    try:
        yield found
    finally:
        _collector.reset(token)


def _warn(message: str) -> None:
    found = _collector.get()
    if found is None:
        # stacklevel: _warn, check_recipient, check_create, App.subscribe, its caller.
        warnings.warn(message, RecipientWarning, stacklevel=5)
    else:
        found.append(message)


@contextmanager
def _field(name: str, *errors: type[AsyncEventsError]) -> Iterator[None]:
    """Name ``name`` as the field at fault in the ``errors`` raised inside."""
    try:
        yield
    except errors as exc:
        if exc.field is None:
            exc.field = name
        raise


class SubscriptionRules:
    """The checks on a subscription's fields, against one installation's catalog and sinks."""

    def __init__(self, settings: Settings, catalog: Catalog, plugins: Plugins) -> None:
        self.settings = settings
        self.catalog = catalog
        self.plugins = plugins

    def check_create(self, *, event_name: str, sink: str, recipient: str, token: str,
                     filter: str | None = None,
                     retry_policy: dict[str, Any] | None = None) -> None:
        """Raise the first error a new subscription with these fields would meet."""
        if sink == PYTHON_SINK:
            # Its recipient is an import path the worker would call: never taken from input.
            raise ConfigError("python subscriptions are made from code, not created here: "
                              "decorate a function with @asyncevents.handler(EVENT) in a module "
                              "listed in handler_modules (asyncevents.toml); a worker creates "
                              "its subscription when it starts", field="sink")
        self.check_token(token)
        self.check_filter(filter)
        self.check_retry_policy(retry_policy)
        with _field("event_name", UnknownEvent):
            self.catalog.check_subscribe(event_name)
        self.check_recipient(sink, recipient)

    def check_update(self, current: Subscription, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Check ``changes`` to ``current``; return the values to store.

        The same checks as creation, on what changes: a recipient can never be
        moved to an address that creation would refuse.
        """
        unknown = sorted(set(changes) - set(CHANGEABLE))
        if unknown:
            raise ConfigError(f"{unknown[0]} cannot be changed; a subscription's changeable "
                              f"fields are: {', '.join(CHANGEABLE)}", field=unknown[0])
        if current.sink == PYTHON_SINK:
            for name in ("recipient", "filter", "retry_policy"):
                if name in changes:
                    # The code is the source of truth: a worker start would undo the change.
                    raise ConfigError(f"a python subscription's {name} comes from its "
                                      "@asyncevents.handler in the code: change it there",
                                      field=name)
        values: dict[str, Any] = {}
        if "active" in changes:
            if changes["active"] is None:
                raise ConfigError("active must be true or false", field="active")
            values["active"] = bool(changes["active"])
        if "recipient" in changes:
            if not changes["recipient"]:
                raise ConfigError("recipient must not be empty", field="recipient")
            self.check_recipient(current.sink, changes["recipient"])
            values["recipient"] = changes["recipient"]
        if "token" in changes:
            if not changes["token"]:
                raise ConfigError("verification_token must not be empty", field="token")
            self.check_token(changes["token"])
            values["token"] = changes["token"]
        if "filter" in changes:
            self.check_filter(changes["filter"])
            values["filter"] = changes["filter"] or None
        if "retry_policy" in changes:
            self.check_retry_policy(changes["retry_policy"])
            values["retry_policy"] = changes["retry_policy"]
        if "metadata" in changes:
            values["metadata"] = changes["metadata"] or {}
        return values

    def check_token(self, token: str) -> None:
        """The verification token must make a signing key, and not be blank."""
        if token and not token.strip():
            # Signs fine, but no one means a secret of spaces: a template left empty.
            raise ConfigError("invalid verification token: it is only whitespace; give a "
                              "secret (e.g. whsec_ and base64 of 24 random bytes)",
                              field="token")
        try:
            signing_key(token)
        except ValueError as exc:
            raise ConfigError(f"invalid verification token: {exc}", field="token") from None

    def check_filter(self, query: str | None) -> None:
        """A filter, when given, must be a valid Lucene query (checked now, not at dispatch)."""
        if query:
            with _field("filter", InvalidQuery):
                compile_filter(query, event_names=True)

    def check_retry_policy(self, policy: dict[str, Any] | None) -> None:
        """Retry policy overrides, when given, must be known and valid."""
        if policy is not None:
            with _field("retry_policy", ConfigError):
                RetryPolicy.check_overrides(policy)

    def check_recipient(self, sink: str, recipient: str) -> None:
        """The sink must be installed and accept ``recipient`` (the SSRF guard for http).

        One it cannot check yet (``UnverifiedRecipient``) passes with a warning.
        """
        with _field("sink", UnknownSink):
            instance = self.plugins.build_sink(sink, self.settings)
        try:
            with _field("recipient", InvalidRecipient):
                instance.validate_recipient(recipient)
        except UnverifiedRecipient as exc:
            _warn(f"recipient not checked: {exc}; accepted, and checked again before "
                  "every delivery")
        finally:
            instance.close()
