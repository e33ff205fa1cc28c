"""Group commit: many threads' deliveries and attempts in shared transactions, real databases."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import event

from asyncevents.core.clock import utcnow
from asyncevents.core.models import Subscription
from asyncevents.core.store import NewAttempt, Store
from asyncevents.core.store.groupcommit import GroupCommit, Kind


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    s = Store.open(database_url, auto_migrate=True)
    s.use_group_commit()
    yield s
    s.close()


def _attempt(ok: bool) -> NewAttempt:
    return NewAttempt(started_at=utcnow(), duration_ms=1.5, success=ok,
                      status_code=200 if ok else 503, response="", error=None if ok else "x",
                      status="delivered" if ok else "retrying")


def _together(n: int, work: Callable[[int], Any]) -> list[Any]:
    """Run work(0..n-1) in n threads released at the same moment."""
    results: list[Any] = [None] * n
    gate = threading.Barrier(n)

    def run(i: int) -> None:
        gate.wait()
        try:
            results[i] = work(i)
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


def _subscription(store: Store) -> Subscription:
    return store.create_subscription(event_name="a", sink="http",
                                     recipient="http://127.0.0.1/x", token="t")


def test_concurrent_writes_share_transactions_and_all_land(store: Store) -> None:
    sub = _subscription(store)
    commits = []
    event.listen(store.engine, "commit", lambda _conn: commits.append(1))

    def one_event(i: int) -> int:
        [delivery] = store.ensure_deliveries(event_id=f"e-{i}", event_name="a",
                                             published_at=utcnow(), payload={"i": i},
                                             targets=[sub])
        first = store.record_attempt(delivery.id, _attempt(False))
        second = store.record_attempt(delivery.id, _attempt(True))
        assert (first, second) == (1, 2)
        return i

    n = 24
    assert _together(n, one_event) == list(range(n))
    assert store.group is not None and store.group.writes == 3 * n
    # Fewer transactions than writes: some were shared (the threads started together).
    assert store.group.batches >= 1
    assert len(commits) < 3 * n
    for i in range(n):
        [delivery] = store._deliveries_of(f"e-{i}", [sub.id]).values()
        assert (delivery.status, delivery.attempts, delivery.payload) == ("delivered", 2, {"i": i})
        assert [(a.number, a.success) for a in store.list_attempts(delivery.id)] == [
            (1, False), (2, True)]


def test_a_redelivered_trigger_in_a_batch_keeps_its_rows_and_spares_the_others(
        store: Store) -> None:
    sub = _subscription(store)
    [old] = store.ensure_deliveries(event_id="e-old", event_name="a", published_at=utcnow(),
                                    payload={}, targets=[sub])
    store.record_attempt(old.id, _attempt(True))

    def dispatch(i: int) -> str:
        event_id = "e-old" if i == 0 else f"e-new-{i}"
        [delivery] = store.ensure_deliveries(event_id=event_id, event_name="a",
                                             published_at=utcnow(), payload={}, targets=[sub])
        return delivery.id

    ids = _together(12, dispatch)
    assert ids[0] == old.id  # the existing row, not a second one
    assert store.get_delivery(old.id).status == "delivered"
    assert all(isinstance(i, str) for i in ids) and len(set(ids)) == 12


def test_an_attempt_for_a_missing_delivery_fails_alone(store: Store) -> None:
    sub = _subscription(store)
    ids = [d.id for d in (store.ensure_deliveries(
        event_id=f"e-{i}", event_name="a", published_at=utcnow(), payload={}, targets=[sub])[0]
        for i in range(8))]
    ids[3] = "00000000-0000-4000-8000-000000000000"

    results = _together(8, lambda i: store.record_attempt(ids[i], _attempt(True)))
    assert isinstance(results[3], Exception)
    assert [r for i, r in enumerate(results) if i != 3] == [1] * 7
    assert store.list_attempts(ids[3]) == []


def test_the_same_delivery_twice_in_one_batch_gets_two_numbers(store: Store) -> None:
    sub = _subscription(store)
    [delivery] = store.ensure_deliveries(event_id="e", event_name="a", published_at=utcnow(),
                                         payload={}, targets=[sub])
    numbers = _together(6, lambda _i: store.record_attempt(delivery.id, _attempt(False)))
    assert sorted(numbers) == [1, 2, 3, 4, 5, 6]
    assert store.get_delivery(delivery.id).attempts == 6


def test_writes_after_close_run_on_their_own() -> None:
    calls: list[str] = []

    class Begin:
        def __enter__(self) -> object:
            calls.append("batch")
            return object()

        def __exit__(self, *exc: object) -> None:
            return None

    kind: Kind[int, int] = Kind("k", lambda _c, items: [i * 2 for i in items],
                                lambda i: calls.append("one") or i * 3)
    group = GroupCommit(Begin)
    assert group.write(kind, 2) == 6  # alone in its batch: written on its own
    group.close()
    assert group.write(kind, 5) == 15
    assert calls == ["one", "one"]
