"""The dashboard's store queries on SQLite, PostgreSQL and MariaDB, and the dashboard page."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from asyncevents.core.clock import utcnow
from asyncevents.core.models import Subscription
from asyncevents.core.search.parse import parse_query
from asyncevents.core.search.sql import compile_where
from asyncevents.core.store import NewAttempt, Store
from tests.api.conftest import Api
from tests.api.helpers import login


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    s = Store.open(database_url, auto_migrate=True)
    yield s
    s.close()


def _sub(store: Store, name: str) -> Subscription:
    return store.create_subscription(event_name="a", sink="http",
                                     recipient=f"http://h/{name}", token="t")


def _attempt(store: Store, sub: Subscription, event: str, at: datetime, *,
             success: bool, error: str | None = None, code: int | None = None) -> str:
    (delivery,) = store.ensure_deliveries(event_id=event, event_name="a", published_at=at,
                                          payload={"n": 1}, targets=[sub])
    store.record_attempt(delivery.id, NewAttempt(
        started_at=at, duration_ms=1.0, success=success, status_code=code, response="",
        error=error, status="delivered" if success else "dead"))
    return delivery.id


def test_dashboard_queries(store: Store) -> None:
    good, bad, gone = _sub(store, "good"), _sub(store, "bad"), _sub(store, "gone")
    since = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    # Two in minute 0 (one at its very first microsecond), one in minute 2, one at 59:59.
    _attempt(store, good, "e1", since, success=True)
    _attempt(store, bad, "e2", since + timedelta(seconds=59, microseconds=999_000),
             success=False, error="connection refused")
    _attempt(store, bad, "e3", since + timedelta(minutes=2, seconds=1), success=False,
             code=500)
    _attempt(store, gone, "e4", since + timedelta(minutes=59, seconds=59), success=False,
             error="timeout")
    _attempt(store, good, "e5", since - timedelta(seconds=1), success=False)  # before
    store.delete_subscription(gone.id)

    buckets = store.outcomes_per_bucket(since, since + timedelta(hours=1), timedelta(minutes=1))
    assert len(buckets) == 60 and buckets[0].start == since
    assert buckets[1].start == since + timedelta(minutes=1)
    assert (buckets[0].succeeded, buckets[0].failed) == (1, 1)
    assert (buckets[2].succeeded, buckets[2].failed) == (0, 1)
    assert (buckets[59].succeeded, buckets[59].failed) == (0, 1)
    assert sum(b.succeeded + b.failed for b in buckets) == 4

    failing = store.failing_subscriptions(since, limit=5)
    assert [(f.subscription_id, f.failed, f.attempts, f.deleted) for f in failing] == [
        (bad.id, 2, 2, False), (gone.id, 1, 1, True)]
    assert failing[0].recipient == "http://h/bad"

    health = store.subscription_health([good.id, bad.id, "nope"])
    assert health[good.id].delivered == 1 and health[good.id].dead == 1
    assert health[good.id].success_ratio == 0.5
    assert health[bad.id].success_ratio == 0.0
    assert health[bad.id].last_error == "HTTP 500"  # the latest failure, by its status
    assert health["nope"].success_ratio is None and health["nope"].last_error is None


def test_pages_newer_and_older(store: Store) -> None:
    sub = _sub(store, "x")
    ids = [_attempt(store, sub, f"e{i}", utcnow(), success=True) for i in range(7)]
    newest_first = [d.id for d in store.search_page(
        compile_where(parse_query("", "search"), store.dialect), limit=10)]
    assert sorted(newest_first) == sorted(ids)
    where = compile_where(parse_query("status:delivered", "search"), store.dialect)
    position = store.delivery_position(newest_first[5])
    assert position is not None
    page = store.search_page_newer(where, limit=3, after=position)
    assert [d.id for d in page] == newest_first[2:5]
    assert store.count_newer(where, position) == 5
    assert store.delivery_position("missing") is None


def test_dashboard_page(api: Api) -> None:
    sub = api.subscription(recipient="http://127.0.0.1:9/failing")
    delivery = api.delivery(sub)
    api.app.store.record_attempt(delivery.id, NewAttempt(
        started_at=utcnow(), duration_ms=3.0, success=False, status_code=503, response="",
        error="HTTP 503 from the receiver", status="retrying"))
    login(api)
    response = api.client.get("/console/dashboard")
    assert response.status_code == 200
    page = response.text
    assert "<svg" in page and 'id="chart-hour"' in page and 'id="chart-day"' in page
    assert 'id="failing"' in page and sub.id in page and "127.0.0.1:9/failing" in page
    assert 'id="queues"' in page and "deliver" in page
    assert 'id="statuses"' in page and "retrying" in page
    assert "http://" not in page.split("<body>")[0]  # nothing loaded from elsewhere
    home = api.client.get("/console/", follow_redirects=False)
    assert home.headers["location"] == "/console/dashboard"
