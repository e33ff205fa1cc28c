"""Declared handlers made subscriptions when a worker starts (sink ``python``).

Each handler becomes a subscription whose recipient is its import path:
created when missing, brought in line with the code (pattern, filter, retry
policy) when changed, never switched on or off (``active`` is the operator's).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from asyncevents.core.events.catalog import Catalog
from asyncevents.core.log import get_logger
from asyncevents.core.models import Subscription
from asyncevents.core.plugins import Plugins
from asyncevents.core.settings import Settings
from asyncevents.core.sink import PYTHON_SINK
from asyncevents.core.store import Store
from asyncevents.core.subscribing.handlers import (
    HandlerGone,
    HandlerSpec,
    declared_handlers,
    load_handler,
)
from asyncevents.core.subscribing.rules import SubscriptionRules
from asyncevents.errors import AsyncEventsError, ConfigError, UnknownSink

__all__ = ["AppParts", "HandlerSync", "sync_handler_subscriptions"]

log = get_logger("asyncevents.handlers")


class AppParts(Protocol):
    """What the sync needs of the App (its settings, catalog, plugins and store)."""

    @property
    def settings(self) -> Settings:
        """The application's settings."""

    @property
    def catalog(self) -> Catalog:
        """The event catalog."""

    @property
    def plugins(self) -> Plugins:
        """The plugin manager."""

    @property
    def store(self) -> Store:
        """The store."""


@dataclass
class HandlerSync:
    """What :func:`sync_handler_subscriptions` did, by handler path."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)
    undeclared: list[str] = field(default_factory=list)


def _check(app: AppParts, spec: HandlerSpec) -> None:
    rules = SubscriptionRules(app.settings, app.catalog, app.plugins)
    try:
        app.catalog.check_subscribe(spec.event_name)
        rules.check_filter(spec.filter)
        rules.check_retry_policy(spec.retry_policy)
    except AsyncEventsError as exc:
        what = f"{exc.field} " if exc.field else ""
        raise ConfigError(f"handler {spec.path}: {what}{exc}") from None


def _changes(spec: HandlerSpec, sub: Subscription) -> dict[str, Any]:
    wanted = {"event_name": spec.event_name, "filter": spec.filter,
              "retry_policy": spec.retry_policy}
    current = {"event_name": sub.event_name, "filter": sub.filter,
               "retry_policy": sub.retry_policy}
    return {key: value for key, value in wanted.items() if current[key] != value}


def _python_subscriptions(app: AppParts) -> dict[str, list[Subscription]]:
    # Pages, oldest first, without their tokens: python subscriptions have none,
    # and a worker must not stop here over another subscription's token.
    found: dict[str, list[Subscription]] = {}
    after: tuple[datetime, str] | None = None
    while True:
        page = app.store.subscriptions_page(limit=500, after=after, sink=PYTHON_SINK)
        for sub in page:
            found.setdefault(sub.recipient, []).append(sub)
        if len(page) < 500:
            return found
        after = (page[-1].created_at, page[-1].id)


def sync_handler_subscriptions(app: AppParts) -> HandlerSync:
    """Create or update the python subscription of every declared handler (worker start).

    Idempotent, keyed by the handler's import path (the recipient). Checks
    every handler first (its pattern against the catalog, its filter and
    retry policy) and raises ``ConfigError`` naming it. Python subscriptions
    of handlers no longer declared are left as they are, with a warning.
    """
    handlers = declared_handlers(app.settings, app.plugins)
    report = HandlerSync()
    if handlers:
        try:
            app.plugins.sink_info(PYTHON_SINK)
        except UnknownSink as exc:
            raise ConfigError(f"handlers are declared but the python sink is not available "
                              f"({exc}); is it blocked by ASYNCEVENTS_DISABLE_PLUGINS?"
                              ) from None
        for spec in handlers:
            _check(app, spec)
    existing = _python_subscriptions(app)
    for spec in handlers:
        subs = existing.get(spec.path, [])
        if not subs:
            app.store.create_subscription(
                event_name=spec.event_name, sink=PYTHON_SINK, recipient=spec.path, token="",
                filter=spec.filter, retry_policy=spec.retry_policy)
            report.created.append(spec.path)
            continue
        changes = _changes(spec, subs[0])
        if changes:
            app.store.update_subscription(subs[0].id, **changes)
            report.updated.append(spec.path)
        else:
            report.unchanged.append(spec.path)
    declared = {spec.path for spec in handlers}
    if report.created or any(len(existing.get(path, ())) > 1 for path in declared):
        _drop_twins(app, declared)
    for path, subs in sorted(existing.items()):
        if path not in declared:
            _warn_undeclared(path, subs, report)
    if handlers or existing:
        log.info("handler subscriptions in line with the code", created=len(report.created),
                 updated=len(report.updated), unchanged=len(report.unchanged),
                 not_declared=len(report.gone) + len(report.undeclared))
    return report


def _drop_twins(app: AppParts, paths: set[str]) -> None:
    # Two workers starting at once may both create a handler's subscription:
    # each keeps the oldest and deletes the others, so both keep the same one.
    for path, subs in _python_subscriptions(app).items():
        if path in paths:
            for twin in subs[1:]:
                with contextlib.suppress(AsyncEventsError):  # the other worker was first
                    app.store.delete_subscription(twin.id)
                log.info("duplicate handler subscription deleted", handler=path,
                         subscription_id=twin.id, kept=subs[0].id)


def _warn_undeclared(path: str, subs: list[Subscription], report: HandlerSync) -> None:
    try:
        load_handler(path)
    except HandlerGone as exc:
        report.gone.append(path)
        for sub in subs:
            log.warning("python subscription whose handler is gone: its deliveries fail and "
                        "end dead (replayable once the handler is back); restore the handler "
                        "or delete the subscription", subscription_id=sub.id, handler=path,
                        active=sub.active, error=str(exc))
        return
    report.undeclared.append(path)
    for sub in subs:
        log.warning("python subscription whose handler is not declared by handler_modules "
                    "or a register_handlers hook: it still imports and is still called; "
                    "declare it again, or disable or delete the subscription",
                    subscription_id=sub.id, handler=path, active=sub.active)
