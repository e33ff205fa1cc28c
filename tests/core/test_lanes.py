"""SubscriptionLanes: slow subscriptions keep to a share of a worker's threads."""

from __future__ import annotations

import asyncio

import pytest

from asyncevents.core.delivery import lanes as deliver
from asyncevents.core.delivery.lanes import Slots, SubscriptionLanes


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(deliver.time, "monotonic", fake)
    return fake


def test_one_thread_or_unknown_slots_never_defer(clock: Clock) -> None:
    for slots in (0, 1):
        lanes = SubscriptionLanes(slots)
        assert all(_enter(lanes, "slow") is not None for _ in range(10))


def test_a_fast_subscription_is_never_held(clock: Clock) -> None:
    lanes = SubscriptionLanes(4)
    lanes.leave("fast", _enter(lanes, "fast") or 0.0)  # one quick delivery: known fast
    assert all(_enter(lanes, "fast") is not None for _ in range(20))


def test_new_subscriptions_leave_a_quarter_of_the_slots(clock: Clock) -> None:
    lanes = SubscriptionLanes(8)
    started = [_enter(lanes, "new") for _ in range(8)]
    assert started.count(None) == 2  # 6 of 8 until it proves fast


def test_a_slow_subscription_gets_half_and_slow_ones_three_quarters(clock: Clock) -> None:
    lanes = SubscriptionLanes(4)
    for key in ("slow", "hang", "fast"):
        started = _enter(lanes, key)
        assert started is not None
        clock.now += 2.0 if key != "fast" else 0.01
        lanes.leave(key, started)
    assert [_enter(lanes, "slow") is not None for _ in range(3)] == [True, True, False]
    assert [_enter(lanes, "hang") is not None for _ in range(2)] == [True, False]
    # Three threads hang or crawl; the fourth is always there for the fast one.
    assert all(_enter(lanes, "fast") is not None for _ in range(5))


def test_a_delivery_running_a_second_makes_a_fast_subscription_slow(clock: Clock) -> None:
    lanes = SubscriptionLanes(4)
    lanes.leave("s", _enter(lanes, "s") or 0.0)
    assert _enter(lanes, "s") is not None and _enter(lanes, "s") is not None
    clock.now += 1.5  # both still running
    assert _enter(lanes, "s") is None


def test_deferrals_spread_out_behind_each_other(clock: Clock) -> None:
    lanes = SubscriptionLanes(4)
    started = _enter(lanes, "hang") or 0.0
    clock.now += 3.0
    lanes.leave("hang", started)
    delays = [lanes.defer_for("hang") for _ in range(6)]
    assert delays == sorted(delays) and delays[0] == 3.0 and delays[-1] > delays[0]
    assert all(d == int(d * 2) / 2 for d in delays)  # few distinct delay queues


def test_the_engine_defers_only_slow_subscriptions_over_their_share(clock: Clock) -> None:
    lanes = SubscriptionLanes(4)
    assert lanes.shared == 3
    # New: never deferred (the engine makes it wait for a shared slot instead).
    running = [lanes.start("new") for _ in range(4)]
    assert not lanes.must_defer("new") and not lanes.is_known_fast("new")
    clock.now += 1.5  # all four still running after a second: slow now
    assert lanes.must_defer("new")
    for started in running:
        lanes.leave("new", started)
    lanes.leave("quick", lanes.start("quick"))
    assert lanes.is_known_fast("quick") and not lanes.must_defer("quick")


def test_slots_go_to_known_fast_subscriptions_first() -> None:
    async def scenario() -> list[str]:
        lanes = SubscriptionLanes(4)
        lanes.leave("fast", lanes.start("fast"))  # one quick delivery: known fast
        slots = Slots(lanes)
        order: list[str] = []
        held = [await slots.acquire("slow") for _ in range(3)]  # the shared part is full
        assert slots.shared == 3

        async def one(key: str) -> None:
            fast = await slots.acquire(key)
            order.append(key)
            await asyncio.sleep(0)
            slots.release(fast)

        # New and slow deliveries wait for the shared part; the fast ones pass them.
        tasks = [asyncio.create_task(one(k)) for k in ("new", "new", "fast", "fast", "fast")]
        await asyncio.sleep(0.01)
        assert order == ["fast", "fast", "fast"]
        for fast in held:
            slots.release(fast)
        await asyncio.gather(*tasks)
        return order

    assert asyncio.run(scenario()) == ["fast", "fast", "fast", "new", "new"]


def _enter(lanes: SubscriptionLanes, key: str) -> float | None:
    """Start a delivery of ``key`` unless its kind's share is taken: its start time, or None."""
    return None if lanes._full(key, deliver.time.monotonic()) else lanes.start(key)
