"""Every problem of a subscription's fields at once, one per field.

:class:`~asyncevents.core.subscribing.rules.SubscriptionRules` raises the
first error it meets, which is what the CLI and the REST API answer. A form
(the console's) shows them all at once, each next to its field: these
functions run the same checks field by field and return each field's first
error, with ``field`` set. An empty list means the rules pass; the caller
still creates or updates through the rules, which check the fields together.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from asyncevents.core.models import Subscription
from asyncevents.core.sink import PYTHON_SINK
from asyncevents.core.subscribing.rules import OPTIONS, SubscriptionRules, collect_warnings
from asyncevents.errors import AsyncEventsError

__all__ = ["create_problems", "update_problems"]


class _Found:
    """Each field's first error."""

    def __init__(self) -> None:
        self.errors: dict[str, AsyncEventsError] = {}

    def run(self, field: str, check: Callable[[], object]) -> None:
        """Run ``check``; keep its error under its own field, else under ``field``."""
        if field in self.errors:
            return
        try:
            check()
        except AsyncEventsError as exc:
            if exc.field is None:
                exc.field = field
            self.errors.setdefault(exc.field, exc)


def create_problems(rules: SubscriptionRules, *, event_name: str, sink: str, recipient: str,
                    token: str, filter: str | None = None,
                    retry_policy: dict[str, Any] | None = None,
                    options: Mapping[str, Any] | None = None) -> list[AsyncEventsError]:
    """What :meth:`~SubscriptionRules.check_create` would refuse, every field's error."""
    found = _Found()
    if sink == PYTHON_SINK:  # refused whatever the rest: check_create says why
        found.run("sink", lambda: rules.check_create(event_name=event_name, sink=sink,
                                                     recipient=recipient, token=token))
        return list(found.errors.values())
    with collect_warnings():  # the warnings are the creation's to give, not these checks'
        _create_checks(found, rules, event_name, sink, recipient, token, filter,
                       retry_policy, dict(options or {}))
    return list(found.errors.values())


def _create_checks(found: _Found, rules: SubscriptionRules, event_name: str, sink: str,
                   recipient: str, token: str, filter: str | None,
                   retry_policy: dict[str, Any] | None, given: dict[str, Any]) -> None:
    found.run("token", lambda: rules.check_token(token, sink=sink))
    found.run("filter", lambda: rules.check_filter(filter))
    found.run("retry_policy", lambda: rules.check_retry_policy(retry_policy))
    for name in [n for n in OPTIONS if n in given]:
        found.run(name, partial(rules.check_options, {name: given[name]}))
    if not any(name in found.errors for name in given):
        found.run("token", lambda: rules.signing_key(rules.check_options(given), token))
    found.run("event_name", lambda: rules.catalog.check_subscribe(event_name))
    found.run("recipient", lambda: rules.check_recipient(sink, recipient))


def update_problems(rules: SubscriptionRules, current: Subscription,
                    changes: Mapping[str, Any]) -> list[AsyncEventsError]:
    """What :meth:`~SubscriptionRules.check_update` would refuse, every changed field's error."""
    found = _Found()
    with collect_warnings():
        for name, value in changes.items():
            found.run(name, partial(rules.check_update, current, {name: value}))
    return list(found.errors.values())
