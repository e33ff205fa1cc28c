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
``token``           ``ConfigError``: empty for a sink that signs (``http``; one whose
                    class says ``signs = False`` needs none), only whitespace, or a
                    ``whsec_`` token that is not base64
``filter``          ``InvalidQuery``: not a valid Lucene filter
``retry_policy``    ``ConfigError``: an unknown or invalid override
``active``          ``ConfigError``: neither true nor false
``rate``            ``ConfigError``: not ``N/s`` or ``N/m`` with N > 0
``max_in_flight``   ``ConfigError``: not a whole number >= 1
``ordering_key``    ``ConfigError``: not a ``data.`` path
``signature``       ``ConfigError``: neither ``hmac`` nor ``ed25519``
``headers``         ``ConfigError``: a name that is not an HTTP token, a value that is
                    not printable ASCII on one line (control characters, non-ASCII),
                    a header asyncevents sets itself (signature, content, host), or
                    one that governs the connection (hop-by-hop, ``Expect``)
``disable_after``   ``ConfigError``: not a number of hours > 0
==================  ============================================================

A recipient the sink cannot check yet (``UnverifiedRecipient``: an http
host name that does not resolve right now) is accepted with a warning; the
sink checks it again before every delivery. Inside ``collect_warnings()``
the warnings are gathered for the caller to show (the REST API's
``warnings`` field, a line on the CLI's stderr); elsewhere they are issued
as ``RecipientWarning`` with :func:`warnings.warn`.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from asyncevents.core.events.catalog import Catalog
from asyncevents.core.models import Subscription, is_secret_header, recipient_origin
from asyncevents.core.plugins import Plugins
from asyncevents.core.retry.policy import RetryPolicy
from asyncevents.core.search import compile_filter
from asyncevents.core.settings import Settings
from asyncevents.core.sink import (
    HOP_BY_HOP_HEADERS,
    PRIVATE_KEY_PREFIX,
    PYTHON_SINK,
    RESERVED_HEADERS,
    ed25519_keys,
    header_value_problem,
    is_reserved_header,
    signing_key,
)
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

__all__ = ["CHANGEABLE", "DEFAULT_GRACE", "OPTIONS", "RESERVED_HEADERS", "SubscriptionRules",
           "collect_warnings", "parse_grace"]

DEFAULT_GRACE = 24 * 3600.0
"""Seconds a rotated token keeps signing when no grace is given."""
_GRACE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_MAX_GRACE = 30 * 86400.0


def parse_grace(value: str | float | int) -> float:
    """Seconds from ``24h``, ``30m``, ``90s``, ``2d`` or a number of seconds (0 to 30 days).

    ``ConfigError`` (field ``grace``) otherwise.
    """
    if isinstance(value, bool):
        seconds = -1.0
    elif isinstance(value, int | float):
        seconds = float(value)
    else:
        found = _GRACE.match(value)
        seconds = float(found.group(1)) * _UNITS[found.group(2)] if found else -1.0
    if not math.isfinite(seconds) or not 0 <= seconds <= _MAX_GRACE:
        raise ConfigError(f"invalid grace {value!r}: give a duration such as 24h, 30m, 90s "
                          "or 2d (at most 30 days; 0 ends the old token now)", field="grace")
    return seconds

OPTIONS = ("rate", "max_in_flight", "ordering_key", "signature", "headers", "disable_after")
"""The receiver protection options, kept together in the subscription's ``options``."""

CHANGEABLE = ("active", "recipient", "token", "filter", "retry_policy", "metadata", *OPTIONS)
"""The fields an update may change, in the order they are checked."""

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*([sm])\s*$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$")
_DATA_PATH = re.compile(r"^data(\.[A-Za-z0-9_-]+)+$")
_MAX_HEADERS = 20


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
                     retry_policy: dict[str, Any] | None = None,
                     options: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Raise the first error a new subscription with these fields would meet.

        Return the receiver protection ``options`` to store (see :meth:`check_options`).
        """
        if sink == PYTHON_SINK:
            # Its recipient is an import path the worker would call: never taken from input.
            raise ConfigError("python subscriptions are made from code, not created here: "
                              "decorate a function with @asyncevents.handler(EVENT) in a module "
                              "listed in handler_modules (asyncevents.toml); a worker creates "
                              "its subscription when it starts", field="sink")
        self.check_token(token, sink=sink)
        self.check_filter(filter)
        self.check_retry_policy(retry_policy)
        checked = self.check_options(options or {})
        self.signing_key(dict(checked), token)  # a whsk_ token must be a valid key
        with _field("event_name", UnknownEvent):
            self.catalog.check_subscribe(event_name)
        self.check_recipient(sink, recipient)
        return checked

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
            changes = self._secret_headers_stay(current, changes)
        if "token" in changes:
            if not changes["token"]:
                raise ConfigError("verification_token must not be empty", field="token")
            self.check_token(changes["token"])
            values["token"] = changes["token"]
            # Replaced outright: a token in its grace from an earlier rotation stops too.
            values["previous_token"] = None
            values["previous_token_until"] = None
        if "filter" in changes:
            self.check_filter(changes["filter"])
            values["filter"] = changes["filter"] or None
        if "retry_policy" in changes:
            self.check_retry_policy(changes["retry_policy"])
            values["retry_policy"] = changes["retry_policy"]
        if "metadata" in changes:
            values["metadata"] = changes["metadata"] or {}
        changed = {name: changes[name] for name in OPTIONS if name in changes}
        new_key = str(values.get("token", "")).startswith(PRIVATE_KEY_PREFIX)
        if changed or (new_key and current.signature == "ed25519"):
            current_options = {name: getattr(current, name) for name in OPTIONS}
            options = self.check_options({**current_options, **changed})
            given = values["token"] if new_key else None
            if current.signing_key and given is None and options.get("signature") == "ed25519":
                options["public_key"] = current.public_key  # the same key goes on signing
            else:
                key = self.signing_key(options, given)
                if key or current.signing_key:
                    values["signing_key"] = key or None
            values["options"] = options
        return values

    @staticmethod
    def _secret_headers_stay(current: Subscription,
                             changes: Mapping[str, Any]) -> Mapping[str, Any]:
        """``changes`` without ``current``'s secret headers when the recipient changes origin.

        A secret header's value (``Authorization``...) belongs to its receiver:
        moved to another scheme, host or port, it goes only if ``headers`` is
        given again with the change. Dropped ones are named in a warning.
        """
        if "headers" in changes or (recipient_origin(changes["recipient"])
                                    == recipient_origin(current.recipient)):
            return changes
        dropped = sorted(name for name in current.headers if is_secret_header(name))
        if not dropped:
            return changes
        _warn(f"secret header{'s' if len(dropped) > 1 else ''} {', '.join(dropped)} dropped: "
              "the recipient moved to another host; give them again with --header (or "
              "headers) to send them there")
        return {**changes, "headers": {name: value for name, value in current.headers.items()
                                       if not is_secret_header(name)}}

    def signing_key(self, options: dict[str, Any], token: str | None) -> str:
        """The Ed25519 private key an ``ed25519`` subscription signs with ("" for ``hmac``).

        ``token`` when it is a ``whsk_`` key, a new key otherwise; its public
        key is put in ``options`` (``public_key``), what receivers verify with.
        """
        options.pop("public_key", None)
        if options.get("signature") != "ed25519":
            return ""
        given = token if token and token.startswith(PRIVATE_KEY_PREFIX) else None
        try:
            private, public = ed25519_keys(given)
        except ValueError as exc:
            raise ConfigError(f"invalid Ed25519 signing key: {exc}", field="token") from None
        options["public_key"] = public
        return private

    def check_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """Check the receiver protection options; return them as stored (unset ones left out).

        ``None`` (or an empty value) unsets an option.
        """
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise ConfigError(f"unknown option {unknown[0]!r}; the options are: "
                              f"{', '.join(OPTIONS)}", field=unknown[0])
        checked: dict[str, Any] = {}
        rate = options.get("rate")
        if rate not in (None, ""):
            checked["rate"] = self.check_rate(rate)
        limit = options.get("max_in_flight")
        if limit is not None:
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
                raise ConfigError("max_in_flight must be a whole number of 1 or more",
                                  field="max_in_flight")
            checked["max_in_flight"] = limit
        key = options.get("ordering_key")
        if key not in (None, ""):
            if not isinstance(key, str) or not _DATA_PATH.match(key):
                raise ConfigError("ordering_key must be a path into the payload such as "
                                  "data.customer_id", field="ordering_key")
            checked["ordering_key"] = key
        signature = options.get("signature") or "hmac"
        if signature not in ("hmac", "ed25519"):
            raise ConfigError("signature must be hmac or ed25519", field="signature")
        if signature != "hmac":
            checked["signature"] = signature
        headers = self.check_headers(options.get("headers") or {})
        if headers:
            checked["headers"] = headers
        hours = options.get("disable_after")
        if hours is not None:
            if (isinstance(hours, bool) or not isinstance(hours, int | float)
                    or not math.isfinite(hours) or hours <= 0):
                raise ConfigError("disable_after must be a number of hours above 0",
                                  field="disable_after")
            checked["disable_after"] = hours
        return checked

    def check_rate(self, rate: Any) -> str:
        """``N/s`` or ``N/m`` (N > 0), normalised (``10 / s`` is ``10/s``)."""
        found = _RATE.match(rate) if isinstance(rate, str) else None
        if found is None or float(found.group(1)) <= 0:
            raise ConfigError(f"invalid rate {rate!r}: give N/s or N/m with N above 0, "
                              "e.g. 10/s or 30/m", field="rate")
        return f"{found.group(1)}/{found.group(2)}"

    def check_headers(self, headers: Any) -> dict[str, str]:
        """Extra headers: HTTP token names, one-line values, none that asyncevents sets."""
        if not isinstance(headers, Mapping):
            raise ConfigError("headers must be an object of names and values", field="headers")
        if len(headers) > _MAX_HEADERS:
            raise ConfigError(f"at most {_MAX_HEADERS} headers", field="headers")
        checked: dict[str, str] = {}
        seen: set[str] = set()
        for name, value in headers.items():
            if not isinstance(name, str) or not _HEADER_NAME.match(name):
                raise ConfigError(f"invalid header name {name!r}: letters, digits and "
                                  "!#$%&'*+.^_`|~- only", field="headers")
            lowered = name.lower()
            if lowered in HOP_BY_HOP_HEADERS:
                raise ConfigError(f"header {name!r} cannot be set: it governs the connection "
                                  "or the exchange (hop-by-hop, or Expect), which the HTTP "
                                  "client manages itself", field="headers")
            if is_reserved_header(name):
                raise ConfigError(f"header {name!r} is set by asyncevents itself (signature, "
                                  "content or host) and cannot be overridden",
                                  field="headers")
            if lowered in seen:
                raise ConfigError(f"header {name!r} is given twice", field="headers")
            if not isinstance(value, str):
                raise ConfigError(f"header {name!r}: the value must be one line of text",
                                  field="headers")
            problem = header_value_problem(value)
            if problem is not None:
                raise ConfigError(f"header {name!r}: the value {problem}; a header value is "
                                  "printable ASCII (letters, digits, punctuation, spaces) on "
                                  "one line", field="headers")
            seen.add(lowered)
            checked[name] = value.strip()
        return checked

    def check_token(self, token: str, *, sink: str | None = None) -> None:
        """The verification token must make a signing key, and not be blank.

        With ``sink``: required when that sink signs (an unknown sink is left to
        :meth:`check_recipient`); given to one that does not, it is kept, with a warning.
        """
        info = self.plugins.sinks().get(sink) if sink is not None else None
        if sink is not None and not token:
            if info is not None and info.signs:
                raise ConfigError(f"a verification token is required: the {sink} sink signs "
                                  "every delivery with it (e.g. whsec_ and base64 of 24 "
                                  "random bytes)", field="token")
            return  # a sink that does not sign needs none; an unknown one is refused later
        if info is not None and not info.signs:
            _warn(f"the {sink} sink does not sign deliveries: the verification token is "
                  "kept but not used")
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
