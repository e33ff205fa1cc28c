"""The App: settings, plugins, catalog, store and broker wired together."""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from datetime import timedelta
from functools import cached_property
from typing import Any

from asyncevents.core.clock import utcnow
from asyncevents.core.delivery.deliver import Deliverer
from asyncevents.core.delivery.dispatch import DISPATCH_SINK, Dispatcher, FilterFn
from asyncevents.core.delivery.engine import Engine
from asyncevents.core.events.catalog import Catalog
from asyncevents.core.log import get_logger
from asyncevents.core.messages import ROUTES, DeliverMessage, TriggerMessage
from asyncevents.core.models import Subscription
from asyncevents.core.plugins import Plugins
from asyncevents.core.publishing.outbox import Outbox, Transactional
from asyncevents.core.publishing.publish import Publisher
from asyncevents.core.retry.base import RetryManagement
from asyncevents.core.retry.policy import RetryPolicy
from asyncevents.core.search import compile_filter
from asyncevents.core.settings import Settings, load_settings
from asyncevents.core.store import MISSING_KEY, Store, needs_secret_key, store_cipher
from asyncevents.core.subscribing.handler_sync import sync_handler_subscriptions
from asyncevents.core.subscribing.rules import DEFAULT_GRACE, SubscriptionRules, parse_grace
from asyncevents.core.transport import Transport
from asyncevents.core.worker.presence import Presence
from asyncevents.core.worker.worker import Periodic, Worker, WorkerLimits, WorkerReport
from asyncevents.errors import ConfigError

__all__ = ["App"]


class App:
    """One asyncevents installation, as its settings describe it.

    Everything is built on first use, so ``App()`` itself touches neither the
    database nor the broker.
    """

    def __init__(self, settings: Settings | None = None, *, plugins: Plugins | None = None,
                 **overrides: Any) -> None:
        if settings is None:
            settings = load_settings(**overrides)
        elif overrides:
            settings = settings.model_copy(update=overrides)
        self.settings = settings
        self._plugins = plugins
        # The dispatchers of this app's engines, for reload_catalog to hand the new catalog to.
        self._dispatchers: weakref.WeakSet[Dispatcher] = weakref.WeakSet()

    @cached_property
    def plugins(self) -> Plugins:
        """The plugin manager with every enabled entry point loaded."""
        if self._plugins is None:
            self._plugins = Plugins.load(disabled=self.settings.disable_plugins)
        return self._plugins

    @cached_property
    def catalog(self) -> Catalog:
        """The event catalog from the settings and the ``register_events`` hooks."""
        return Catalog.build(self.settings.events, self.plugins.events(),
                             strict=self.settings.strict_events)

    @cached_property
    def store(self) -> Store:
        """The store (its schema is created on first use with SQLite).

        Secrets are encrypted with ``ASYNCEVENTS_SECRET_KEY``, or with the key
        kept beside a SQLite file (never made anew while the database holds
        secrets encrypted with a lost one); on a server database without the
        key every write of a secret is refused. Opening writes nothing:
        secrets found in clear stay so until ``asyncevents rotate-key``.
        """
        secret = self.settings.secret_key
        store = Store.open(self.settings.database_url)
        try:
            store.cipher = store_cipher(secret.get_secret_value() if secret else None,
                                        self.settings.database_url,
                                        holds_secrets=store.holds_encrypted_secrets)
        except ConfigError:
            store.close()
            raise
        return store

    def require_secret_key(self) -> None:
        """Raise ``ConfigError`` (one line) unless this process has the installation's key.

        ``serve`` and workers call it before they start: on a server database
        ``ASYNCEVENTS_SECRET_KEY`` must be set, and a key whose fingerprint is
        not the stored one is refused (:meth:`Store.check_secret_key`) before
        a message is taken, so deliveries stay untouched.
        """
        if self.settings.secret_key is None and needs_secret_key(self.settings.database_url):
            raise ConfigError(MISSING_KEY)
        self.store.check_secret_key()

    @cached_property
    def transport(self) -> Transport:
        """The transport that ``settings.transport_url`` names (``register_transports``)."""
        transport = self.plugins.transport(self.settings)
        if transport.runs_inline:  # sync://: handled in this process, with this app's handlers
            transport.bind(lambda: {route: self._pipeline.run_now for route in ROUTES})
        return transport

    @cached_property
    def retries(self) -> RetryManagement:
        """The RetryManagement that the ``retry_management`` hook picks."""
        found: RetryManagement | None = self.plugins.hook.retry_management(
            settings=self.settings, transport=self.transport, store=self.store
        )
        if found is None:
            raise ConfigError(f"no RetryManagement for transport {self.transport.scheme!r}")
        return found

    @cached_property
    def policy(self) -> RetryPolicy:
        """The global retry policy."""
        return RetryPolicy.from_settings(self.settings)

    @cached_property
    def publisher(self) -> Publisher:
        """Publishes events."""
        # The RetryManagement only when an event is delayed: publishing needs no store.
        return Publisher(self.settings, self.catalog, self.transport, lambda: self.retries,
                         self.plugins)

    def reload_catalog(self, settings: Settings | None = None) -> Catalog:
        """Read the event catalog again and use it from now on; return it.

        From ``settings`` or, by default, from the environment and
        ``asyncevents.toml`` (``ASYNCEVENTS_CONFIG``), as ``App()`` reads them;
        ``register_events`` hooks are asked again. Only the catalog changes (the
        ``[events]`` and ``strict_events``): publishing, subscribing, the API and
        this app's dispatchers see the new definitions. A file, schema or
        resolver that does not load raises ``ConfigError`` and leaves the current
        catalog in use. ``asyncevents serve`` calls it on SIGHUP.
        """
        fresh = settings if settings is not None else load_settings()
        catalog = Catalog.build(fresh.events, self.plugins.events(), strict=fresh.strict_events)
        catalog.check_resolvers()
        self.settings = self.settings.model_copy(
            update={"events": fresh.events, "strict_events": fresh.strict_events})
        # One reference swapped at a time: a reader sees the old catalog or the new, whole.
        self.__dict__["catalog"] = catalog
        if "publisher" in self.__dict__:
            self.publisher.catalog = catalog
        for dispatcher in list(self._dispatchers):
            dispatcher.catalog = catalog
        return catalog

    def filter_fn(self) -> FilterFn:
        """How subscription filters are evaluated: the search engine's Python evaluator."""
        return lambda query, payload, name: compile_filter(query, event_names=True)(payload,
                                                                                   name)

    @cached_property
    def outbox(self) -> Outbox:
        """The transactional outbox: ``publish(..., connection=...)`` and the workers' sweep."""
        return Outbox(self.settings, self.transport, lambda: self.retries)

    def publish(self, name: str, data: Any, *, delay: float | None = None,
                connection: Transactional | None = None) -> str:
        """Publish event ``name`` with ``data`` (a JSON object); return the event id.

        With ``connection`` (the application's SQLAlchemy ``Connection`` or
        ``Session``) the event is written in that transaction and sent if and
        only if it commits: the transactional outbox (:mod:`.outbox`).
        """
        if connection is None:
            return self.publisher.publish(name, data, delay=delay)
        messages = self.plugins.publish([self.publisher.message(name, data)],
                                        lambda ms: self.outbox.write(connection, ms, delay=delay))
        return messages[0].event_id

    def publish_many(self, events: Iterable[tuple[str, Any]], *,
                     connection: Transactional | None = None) -> list[str]:
        """Publish ``(name, data)`` pairs together; all are checked before any is sent.

        ``connection``: as for :meth:`publish`, all in that transaction, in order.
        """
        if connection is None:
            return self.publisher.publish_many(events)
        messages = self.plugins.publish(
            [self.publisher.message(name, data) for name, data in events],
            lambda ms: self.outbox.write(connection, ms))
        return [message.event_id for message in messages]

    def subscribe(self, event_name: str, recipient: str, *, sink: str = "http",
                  token: str = "", filter: str | None = None,
                  retry_policy: dict[str, Any] | None = None,
                  metadata: dict[str, Any] | None = None,
                  **options: Any) -> Subscription:
        """Check and store a new subscription (see :mod:`.subscriptions` for the rules).

        ``token`` signs the deliveries: required for a sink that signs (``http``),
        not for one that does not (``eventbridge``).

        ``options``: ``rate`` (``"10/s"``, ``"30/m"``), ``max_in_flight``,
        ``ordering_key`` (``"data.customer_id"``), ``signature`` (``"hmac"`` or
        ``"ed25519"``), ``headers`` (a dict), ``disable_after`` (hours).
        """
        rules = SubscriptionRules(self.settings, self.catalog, self.plugins)
        checked = rules.check_create(event_name=event_name, sink=sink, recipient=recipient,
                                     token=token, filter=filter, retry_policy=retry_policy,
                                     options=options)
        key = rules.signing_key(checked, token)  # ed25519: the token's whsk_ key, or a new one
        return self.store.create_subscription(
            event_name=event_name, sink=sink, recipient=recipient, token=token,
            filter=filter, retry_policy=retry_policy, metadata=metadata, options=checked,
            signing_key=key,
        )

    def update_subscription(self, subscription_id: str, **changes: Any) -> Subscription:
        """Check and apply ``changes`` to a subscription, with the rules creation follows.

        Changeable: ``active``, ``recipient``, ``token``, ``filter``,
        ``retry_policy``, ``metadata`` and the options of :meth:`subscribe`
        (``None`` unsets one); fields left out stay as they are.
        """
        current = self.store.get_subscription(subscription_id)
        rules = SubscriptionRules(self.settings, self.catalog, self.plugins)
        values = rules.check_update(current, changes)
        if not values:
            return current
        return self.store.update_subscription(subscription_id, **values)

    def rotate_token(self, subscription_id: str, token: str,
                     grace: str | float = DEFAULT_GRACE) -> Subscription:
        """Sign with ``token`` from now on, and with the current token too for ``grace``.

        ``grace``: seconds, or ``"24h"``, ``"30m"``...; 0 drops the old token now.
        During the grace ``webhook-signature`` carries both signatures, so receivers
        switch without a gap. Neither token is ever shown.
        """
        current = self.store.get_subscription(subscription_id)
        if current.signature == "ed25519":
            raise ConfigError("an ed25519 subscription signs with its key, not a token: give "
                              "a new key with 'subscriptions update ID --token whsk_...' "
                              "(receivers then need its new public_key)", field="token")
        rules = SubscriptionRules(self.settings, self.catalog, self.plugins)
        seconds = parse_grace(grace)
        if not token:
            raise ConfigError("the new verification token must not be empty", field="token")
        rules.check_token(token)
        keep = seconds > 0 and current.token != token
        return self.store.update_subscription(
            subscription_id, token=token, previous_token=current.token if keep else None,
            previous_token_until=utcnow() + timedelta(seconds=seconds) if keep else None)

    def replay(self, delivery_id: str) -> None:
        """Start a new chain of attempts for a delivery, under the same uuid."""
        delivery = self.store.get_delivery(delivery_id)
        if delivery.sink == DISPATCH_SINK:
            self.store.set_delivery_status(delivery.id, "retrying")
            self.transport.enqueue(TriggerMessage(delivery.event_id, delivery.event_name,
                                                  delivery.payload, delivery.published_at))
            return
        self.store.set_delivery_status(delivery.id, "pending")
        self.transport.enqueue(DeliverMessage(delivery.id, replay=True))

    @cached_property
    def _pipeline(self) -> Engine:
        """The engine of an inline transport (``sync://``), run by ``publish`` itself."""
        return self._engine(concurrency=4, inline_all=True)

    def _engine(self, concurrency: int, inline_all: bool = False) -> Engine:
        deliverer = Deliverer(self.settings, self.store, self.plugins, self.retries, self.policy)
        dispatcher = Dispatcher(self.catalog, self.store, self.transport, self.retries,
                                self.policy, self.filter_fn())
        self._dispatchers.add(dispatcher)
        reason = ("the queue gave up on this message: it was handed out "
                  f"{self.settings.amqp_delivery_limit} times without an ack "
                  "(a worker may have crashed on it each time)")
        # The features on the path (receiver protection, operational events, a
        # plugin's own); their events go out through the normal publish path.
        return Engine(dispatcher, deliverer, concurrency=concurrency, dead_reason=reason,
                      inline_all=inline_all, middleware=self.plugins.middleware(),
                      publish=self.publish)

    def worker(self, limits: WorkerLimits | None = None,
               retention_days: float | None = None) -> Worker:
        """A worker over this app's queues; ``run()`` it.

        With ``retention_days``, the worker also removes final deliveries older
        than that, once an hour.
        """
        self.require_secret_key()
        # What a sink's deliveries would fail on later, said once at the start.
        self.plugins.log_problems(get_logger("asyncevents.worker"))
        self.catalog.check_resolvers()  # now, rather than at the first dispatch
        sync_handler_subscriptions(self)  # @handler functions become python subscriptions
        concurrency = (limits or WorkerLimits()).concurrency
        engine = self._engine(concurrency)
        # The worker's housekeeping thread runs these (never its consuming one).
        # Successes held back from the health rows (at most a second in a busy
        # worker) are written by an idle one too, on the engine's loop.
        periodic = [Periodic("health flush", 1.0, engine.idle)]
        if retention_days is not None:
            periodic.append(Periodic("cleanup", 3600.0, lambda: self.cleanup(retention_days)))
        if self.outbox.swept_url is not None:  # what a crash left in the outbox after a commit
            self.outbox.sweep_or_log()  # now: a worker with a short --max-idle-time sweeps too
            periodic.append(Periodic("outbox sweep", self.settings.outbox_sweep_seconds,
                                     self.outbox.sweep_or_log))  # an outage: two lines
        presence = Presence(self.store, list(ROUTES), concurrency)
        return Worker(self.transport, self.retries, engine, limits, periodic=periodic,
                      presence=presence)

    def run_worker(self, limits: WorkerLimits | None = None,
                   retention_days: float | None = None) -> WorkerReport:
        """Run a worker in this thread until it stops."""
        return self.worker(limits, retention_days).run()

    def cleanup(self, days: float, *, dry_run: bool = False) -> int:
        """Remove delivered and dead deliveries older than ``days``; return how many."""
        cutoff = utcnow() - timedelta(days=days)
        return self.store.purge_before(cutoff, dry_run=dry_run)

    def close(self) -> None:
        """Release connections."""
        if "outbox" in self.__dict__:
            self.outbox.close()
        if "transport" in self.__dict__:
            self.transport.close()
        if "_pipeline" in self.__dict__:
            self._pipeline.close()
        if "store" in self.__dict__:
            self.store.close()
