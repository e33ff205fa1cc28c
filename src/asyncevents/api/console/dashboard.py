"""The console's home: attempts per minute by outcome, statuses, failing subscriptions, queues.

Every figure comes from one store query (:mod:`asyncevents.core.store.dashboard`)
or from the transport's ``queue_sizes()``; a broker that does not answer
leaves its panel with the one-line reason and the rest of the page intact.
"""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from asyncevents.api.console.chart import outcome_chart
from asyncevents.api.console.render import page, user
from asyncevents.api.deps import app_of
from asyncevents.core.clock import utcnow
from asyncevents.core.transport.base import describe
from asyncevents.errors import AsyncEventsError

__all__ = ["STATUSES", "router"]

router = APIRouter(prefix="/console", include_in_schema=False)

STATUSES = ("pending", "retrying", "delivered", "dead")
"""The delivery statuses, in the order the dashboard lists them."""

_MINUTE = timedelta(minutes=1)


@router.get("/dashboard")
def dashboard(request: Request) -> HTMLResponse:
    """Outcomes over the last hour and day, counts by status, failing subscriptions, queues."""
    ctx = user(request, "deliveries:read")
    app = app_of(request)
    store = app.store
    now = utcnow()
    # The current minute included; the day's ten-minute bars end at the next ten minutes.
    until = now.replace(second=0, microsecond=0) + _MINUTE
    until_day = now.replace(minute=now.minute - now.minute % 10, second=0,
                            microsecond=0) + 10 * _MINUTE
    hour = store.outcomes_per_bucket(until - timedelta(hours=1), until, _MINUTE)
    # Ten-minute bars for the day: 1440 one-minute bars would be thinner than a pixel.
    day = store.outcomes_per_bucket(until_day - timedelta(days=1), until_day, 10 * _MINUTE)
    statuses = dict.fromkeys(STATUSES, 0)
    for _sink, status, count in store.count_deliveries_by_status():
        statuses[status] = statuses.get(status, 0) + count
    queues: dict[str, int] = {}
    queue_error = ""
    try:
        queues = app.transport.queue_sizes()
    except (AsyncEventsError, OSError) as exc:
        queue_error = describe(exc)
    return page(request, "dashboard.html", **ctx,
                hour=outcome_chart(hour, "chart-hour", "last hour"),
                day=outcome_chart(day, "chart-day", "last day", "10 minutes"),
                statuses=statuses, total=sum(statuses.values()),
                failing=store.failing_subscriptions(now - timedelta(days=1), limit=10),
                queues=queues, queue_error=queue_error,
                scheduled=store.count_scheduled())
