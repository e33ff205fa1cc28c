"""The engine: batches of messages through dispatch and delivery on one event loop.

The worker's main thread receives messages and hands them over in batches
(:meth:`Engine.submit`). A batch is handled on the engine's event loop, in a
thread of its own: its events are dispatched together (one read of the cached
subscriptions, one insert of all their deliveries, one publish of the fan-out
copies), the deliveries of the batch are read in one query, every first
attempt runs concurrently (asynchronous sinks on the loop, synchronous ones in
a thread pool), and all attempts are written in one transaction. The store
and the broker are synchronous clients: their calls run in a few I/O threads,
so the loop keeps delivering for the other batches meanwhile.

Each message's outcome (ack, requeue, drop) comes back to the worker, which
settles it only then: a crash anywhere before sends it again.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future

import structlog

from asyncevents.core.delivery.deliver import Deliverer
from asyncevents.core.delivery.dispatch import Dispatcher
from asyncevents.core.delivery.outcome import Settle
from asyncevents.core.delivery.threads import Threads
from asyncevents.core.messages import DeliverMessage, Message, TriggerMessage
from asyncevents.core.pipeline import (
    Job,
    Middleware,
    MiddlewareFactory,
    Pipeline,
    PipelineContext,
    Publish,
)
from asyncevents.core.retry.outage import OutageLog
from asyncevents.core.transport import describe
from asyncevents.errors import NotFound, StoreError, TransportError

__all__ = ["Engine", "Item"]

log = structlog.get_logger("asyncevents.worker")

#: A message to handle, and whether the transport gave up on it (record it as dead).
Item = tuple[Message, bool]

# A handler that failed waits this long before its message is requeued, so a
# database outage does not turn into a hot loop.
_FAILED_PAUSE = 1.0
#: Deliveries of one event attempted by the batch that dispatched it, at least.
INLINE_FANOUT = 100


class Engine:
    """Handles batches of messages for a worker (or, for ``sync://``, for the publisher)."""

    def __init__(self, dispatcher: Dispatcher, deliverer: Deliverer, *, concurrency: int,
                 dead_reason: str = "", inline_all: bool = False,
                 middleware: Sequence[MiddlewareFactory] = (),
                 publish: Publish | None = None) -> None:
        self.dispatcher = dispatcher
        self.deliverer = deliverer
        self.concurrency = max(1, concurrency)
        deliverer.use_slots(self.concurrency)
        self.dead_reason = dead_reason
        # How many of an event's deliveries its dispatch attempts itself (no
        # trip through the queue and back: a fan-out to 100 subscriptions is
        # one message, not 101); a larger fan-out's rest goes through the
        # delivery queue, to be shared with the other workers. Inline
        # transports take them all.
        self.inline = 1_000_000 if inline_all else max(self.concurrency, INLINE_FANOUT)
        self.threads = Threads(self.concurrency)
        context = PipelineContext(deliverer.settings, deliverer.store, self.threads.io, publish)
        made = (factory(context) for factory in middleware)
        self.pipeline = Pipeline([m for m in made if isinstance(m, Middleware)])
        #: A store or broker outage is two lines in the log, not one per requeued message.
        self.store_outage = OutageLog("store")
        self.broker_outage = OutageLog("broker")
        deliverer.pipeline = self.pipeline
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        # One delivery at a time means one in queue order: batches are handled
        # one after the other, so their attempts come in the order the
        # messages did (with more slots, batches overlap and order is kept
        # only by ordering keys).
        self._in_order = asyncio.Lock() if self.concurrency == 1 else None

    def _started(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                self._thread = threading.Thread(target=run, name="asyncevents-engine",
                                                daemon=True)
                self._thread.start()
                ready.wait()
                self._loop = loop
            return self._loop

    def submit(self, items: Sequence[Item]) -> Future[list[Settle]]:
        """Start handling a batch; the future gives each message's outcome, in order."""
        return asyncio.run_coroutine_threadsafe(self.run(items), self._started())

    def run_now(self, message: Message) -> None:
        """Handle one message before returning (``sync://``); its handler's error is raised."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("sync:// cannot publish from the engine's own loop")
        loop = self._started()
        asyncio.run_coroutine_threadsafe(self.run([(message, False)], strict=True),
                                         loop).result()

    def stop_starting(self) -> None:
        """Start no more deliveries: those waiting for a slot end unattempted (requeued)."""
        self.deliverer.stopping.set()

    def close(self) -> None:
        """Close the sinks, stop the loop and the threads."""
        with self._lock:
            loop, thread, self._loop = self._loop, self._thread, None
        if loop is not None and thread is not None:
            asyncio.run_coroutine_threadsafe(self._aclose(), loop).result(timeout=30)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=30)
            loop.close()
        else:
            asyncio.run(self._aclose())
        self.threads.shutdown()

    async def _aclose(self) -> None:
        await self.pipeline.close()  # the middleware writes what it held back
        await self.deliverer.aclose()

    def idle(self) -> None:
        """Tell the pipeline the worker is idle (from any thread; run on the engine's loop)."""
        with self._lock:
            loop = self._loop
        if loop is None:
            return
        asyncio.run_coroutine_threadsafe(self.pipeline.idle(), loop).result(timeout=30)

    async def run(self, items: Sequence[Item], strict: bool = False) -> list[Settle]:
        """Handle a batch: dispatch, attempts, records; each message's outcome.

        With ``strict``, a handler's error is raised instead of becoming a requeue.
        """
        if self._in_order is None:
            return await self._run(items, strict)
        async with self._in_order:
            return await self._run(items, strict)

    async def _run(self, items: Sequence[Item], strict: bool) -> list[Settle]:
        began, failures = time.monotonic(), self._outage_failures()
        outcomes = await self._handle(items, strict)
        if self._outage_failures() == failures:  # no store or broker failure meanwhile
            self.store_outage.recovered(began=began)
            self.broker_outage.recovered(began=began)
        return outcomes

    def _outage_failures(self) -> int:
        return self.store_outage.failures + self.broker_outage.failures

    async def _handle(self, items: Sequence[Item], strict: bool) -> list[Settle]:
        outcomes: list[Settle] = [Settle.ACK] * len(items)
        jobs: list[tuple[int, Job]] = []
        triggers = [(i, m) for i, (m, dead) in enumerate(items)
                    if not dead and isinstance(m, TriggerMessage)]
        delivers = [(i, m) for i, (m, dead) in enumerate(items)
                    if not dead and isinstance(m, DeliverMessage)]
        for i, (message, dead) in enumerate(items):
            if dead:
                outcomes[i] = await self._guarded(self._give_up, message, strict=strict)
        if triggers:
            await self._dispatch(triggers, outcomes, jobs, strict)
        if delivers:
            await self._load(delivers, outcomes, jobs, strict)
        if jobs:
            try:
                recorded = await self.deliverer.attempt_many([j for _, j in jobs],
                                                             self.threads)
            except Exception as exc:
                if strict:
                    raise
                self._failed(exc, len({i for i, _ in jobs}))
                await asyncio.sleep(_FAILED_PAUSE)
                recorded = [False] * len(jobs)
            for (i, _), ok in zip(jobs, recorded, strict=True):
                if not ok and outcomes[i] is Settle.ACK:
                    outcomes[i] = Settle.REQUEUE
        return outcomes

    async def _dispatch(self, triggers: list[tuple[int, TriggerMessage]],
                        outcomes: list[Settle], jobs: list[tuple[int, Job]],
                        strict: bool) -> None:
        messages = [m for _, m in triggers]
        # The middleware may replace the messages (tracing: ones that carry a span's context).
        told = self.pipeline.dispatching(messages)
        try:
            # The lanes are the loop's: dispatch, in an I/O thread, gets what they say now.
            found = await self.threads.io(self.dispatcher.handle_many,
                                          told.messages if told else messages, self.inline,
                                          self.deliverer.lanes.slow_ids())
        except Exception as exc:
            self.pipeline.dispatched(told, exc)
            if strict:
                raise
            if len(triggers) == 1:
                self._failed(exc)
                await asyncio.sleep(_FAILED_PAUSE)
                outcomes[triggers[0][0]] = Settle.REQUEUE
                return
            # One bad message must not fail the others: each on its own.
            for pair in triggers:
                await self._dispatch([pair], outcomes, jobs, strict)
            return
        self.pipeline.dispatched(told, None)
        for (i, _), now in zip(triggers, found, strict=True):
            jobs.extend((i, job) for job in now)

    async def _load(self, delivers: list[tuple[int, DeliverMessage]], outcomes: list[Settle],
                    jobs: list[tuple[int, Job]], strict: bool) -> None:
        try:
            found = await self.threads.io(self.deliverer.load, [m for _, m in delivers])
        except Exception as exc:
            if strict:
                raise
            self._failed(exc)
            await asyncio.sleep(_FAILED_PAUSE)
            for i, _ in delivers:
                outcomes[i] = Settle.REQUEUE
            return
        for (i, message), job in zip(delivers, found, strict=True):
            if job is None:
                # The delivery is gone for good: purged, or the message belongs
                # to another installation sharing the broker.
                if strict:
                    raise NotFound(f"no delivery with uuid {message.delivery_id!r}")
                log.error("malformed message dropped", route="deliver",
                          problem=f"no delivery with uuid {message.delivery_id!r}")
                outcomes[i] = Settle.DROP
            else:
                jobs.append((i, job))

    async def _guarded(self, work: Callable[[Message], None], message: Message,
                       strict: bool) -> Settle:
        try:
            await self.threads.io(work, message)
        except NotFound as exc:
            if strict:
                raise
            log.error("malformed message dropped", route=message.route, problem=str(exc))
            return Settle.DROP
        except Exception as exc:
            if strict:
                raise
            self._failed(exc)
            await asyncio.sleep(_FAILED_PAUSE)
            return Settle.REQUEUE
        return Settle.ACK

    def _give_up(self, message: Message) -> None:
        if isinstance(message, TriggerMessage):
            self.dispatcher.give_up(message, self.dead_reason)
        elif isinstance(message, DeliverMessage):
            self.deliverer.give_up(message, self.dead_reason)

    def _failed(self, exc: BaseException, messages: int = 1) -> None:
        """Messages go back to the queue: an outage's first failure is logged, the rest counted."""
        if isinstance(exc, StoreError):
            self.store_outage.failed(exc, count=messages)
        elif isinstance(exc, TransportError):
            self.broker_outage.failed(exc, count=messages)
        elif messages == 1:
            log.error("handler failed, message returned to the queue", error=describe(exc))
        else:
            log.error("handler failed, messages returned to the queue", error=describe(exc),
                      messages=messages)
