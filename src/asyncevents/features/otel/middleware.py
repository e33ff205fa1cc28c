"""Tracing on the pipeline: a span per dispatched event, a span per recorded attempt.

Made only when tracing is on (:func:`asyncevents.features.otel.configure`): an
installation without the ``OTEL_*`` variables has no such middleware, and its
batches pay nothing for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from asyncevents.core.pipeline import Batch, DispatchBatch, Middleware, Settled

if TYPE_CHECKING:
    from asyncevents.features.otel.tracing import Dispatching, Tracing

__all__ = ["TracingMiddleware"]


class TracingMiddleware(Middleware):
    """Dispatch spans around each batch's dispatch; attempt spans once they are recorded."""

    name = "otel"

    def __init__(self, tracing: Tracing) -> None:
        self.tracing = tracing

    def before_dispatch(self, batch: DispatchBatch) -> None:
        """A consumer span per event; the messages dispatched carry its context."""
        traced = self.tracing.dispatching(batch.messages)
        batch.messages = list(traced.messages)
        batch.notes[self.name] = traced

    def after_dispatch(self, batch: DispatchBatch, error: BaseException | None) -> None:
        """End the batch's dispatch spans (failed with ``error``)."""
        traced: Dispatching | None = batch.notes.get(self.name)
        if traced is not None:
            traced.end(error)

    async def after_attempts(self, batch: Batch, settled: Sequence[Settled]) -> None:
        """A span per recorded attempt, child of its delivery's context."""
        self.tracing.attempts(batch.jobs, settled)
