"""Operational events: a dead delivery, a subscription disabled by ``410 Gone``.

After a batch's attempts are recorded, :class:`OperationalEvents` publishes
``asyncevents.delivery.dead`` for each delivery that died at its receiver and
``asyncevents.subscription.disabled`` for each subscription a ``410 Gone``
disabled, through the application's publish path. Before the attempts, it
refuses an operational event about the very subscription it would be sent
to: no loops. (Circuit changes are told by :mod:`asyncevents.features.protection`,
which sees them.)
"""

from __future__ import annotations

from collections.abc import Sequence

from asyncevents.core.events.catalog import OPERATIONAL_EVENTS
from asyncevents.core.models import shown_recipient
from asyncevents.core.pipeline import Batch, Middleware, PipelineContext, Settled

__all__ = ["OperationalEvents"]


#: The reason recorded for an operational event not sent to the subscription it is about.
ABOUT_ITSELF = "not sent: an operational event about this subscription itself"


class OperationalEvents(Middleware):
    """Publishes the operational events that a batch's outcomes call for."""

    name = "operational"

    def __init__(self, context: PipelineContext) -> None:
        self.context = context

    @classmethod
    def for_engine(cls, context: PipelineContext) -> OperationalEvents:
        """The factory registered with ``register_middleware``."""
        return cls(context)

    async def before_attempts(self, batch: Batch) -> None:
        """Refuse an operational event about the subscription it would go to."""
        for job in batch.jobs:
            sub, delivery = job.subscription, job.delivery
            if (sub is not None and delivery.event_name in OPERATIONAL_EVENTS
                    and delivery.payload.get("subscription_id") == sub.id):
                batch.refuse(delivery.id, ABOUT_ITSELF)

    async def after_attempts(self, batch: Batch, settled: Sequence[Settled]) -> None:
        """``asyncevents.subscription.disabled`` for 410 Gone, ``.delivery.dead`` for deaths."""
        for s in settled:
            if s.gone:
                await self.context.announce("asyncevents.subscription.disabled", {
                    "subscription_id": s.subscription.id,
                    "recipient": shown_recipient(s.subscription.recipient),
                    "failure_ratio": None,
                    "consecutive_failures": None, "last_error": s.error,
                    "failing_since": None})
            if (s.status == "dead" and s.counted
                    and s.delivery.event_name not in OPERATIONAL_EVENTS):
                await self.context.announce("asyncevents.delivery.dead", {
                    "delivery_id": s.delivery.id, "event_id": s.delivery.event_id,
                    "event_name": s.delivery.event_name,
                    "subscription_id": s.delivery.subscription_id, "attempts": s.number,
                    "error": s.error})
