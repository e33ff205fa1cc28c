"""The micro-batcher: concurrent calls per key share one send, each gets its own result."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from asyncevents.sinks.batching import MicroBatcher


class Recorder:
    def __init__(self, delay: float = 0.0) -> None:
        self.calls: list[tuple[str, list[int]]] = []
        self.lock = threading.Lock()
        self.delay = delay

    def send(self, key: str, items: list[int]) -> list[str]:
        with self.lock:
            self.calls.append((key, items))
        time.sleep(self.delay)
        return [f"{key}:{item}" for item in items]


def test_a_lone_call_waits_no_longer_than_the_window() -> None:
    recorder = Recorder()
    batcher: MicroBatcher[str, int, str] = MicroBatcher(recorder.send, max_items=10, window=0.05)
    started = time.monotonic()
    assert batcher.submit("bus", 1) == "bus:1"
    elapsed = time.monotonic() - started
    assert 0.04 <= elapsed < 0.5
    assert recorder.calls == [("bus", [1])]


def test_window_zero_sends_at_once() -> None:
    recorder = Recorder()
    batcher: MicroBatcher[str, int, str] = MicroBatcher(recorder.send, max_items=10, window=0)
    started = time.monotonic()
    assert [batcher.submit("k", i) for i in range(3)] == ["k:0", "k:1", "k:2"]
    assert time.monotonic() - started < 0.05
    assert len(recorder.calls) == 3


def test_concurrent_calls_share_batches_of_at_most_max_items() -> None:
    recorder = Recorder()
    batcher: MicroBatcher[str, int, str] = MicroBatcher(recorder.send, max_items=10, window=0.2)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=25) as pool:
        results = list(pool.map(lambda i: batcher.submit("bus", i), range(25)))
    assert results == [f"bus:{i}" for i in range(25)]  # each caller gets its own answer
    sizes = sorted(len(items) for _, items in recorder.calls)
    assert sum(sizes) == 25 and max(sizes) <= 10
    assert len(sizes) <= 5  # grouped, not one call each
    # Two full batches went out at once rather than after the window.
    assert sizes.count(10) >= 1
    assert time.monotonic() - started < 1.0


def test_full_batch_is_sent_without_waiting_for_the_window() -> None:
    recorder = Recorder()
    batcher: MicroBatcher[str, int, str] = MicroBatcher(recorder.send, max_items=4, window=5.0)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda i: batcher.submit("bus", i), range(4)))
    assert time.monotonic() - started < 1.0
    assert results == ["bus:0", "bus:1", "bus:2", "bus:3"]
    assert [len(items) for _, items in recorder.calls] == [4]


def test_keys_are_batched_apart() -> None:
    recorder = Recorder()
    batcher: MicroBatcher[str, int, str] = MicroBatcher(recorder.send, max_items=10, window=0.1)
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda i: batcher.submit(f"bus{i % 2}", i), range(6)))
    assert results == [f"bus{i % 2}:{i}" for i in range(6)]
    for key, items in recorder.calls:
        assert all(f"bus{i % 2}" == key for i in items)


def test_weight_limit_splits_batches() -> None:
    recorder = Recorder()
    batcher: MicroBatcher[str, int, str] = MicroBatcher(
        recorder.send, max_items=10, window=0.2, max_weight=100)
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda i: batcher.submit("bus", i, 60), range(4)))
    assert sorted(len(items) for _, items in recorder.calls) == [1, 1, 1, 1]
    heavy = MicroBatcher(recorder.send, max_items=10, window=0.01, max_weight=100)
    assert heavy.submit("bus", 7, 500) == "bus:7"  # too heavy alone: still sent, alone


def test_a_send_error_reaches_every_caller_of_the_batch() -> None:
    def broken(key: str, items: list[int]) -> list[str]:
        raise ConnectionError("down")

    batcher: MicroBatcher[str, int, str] = MicroBatcher(broken, max_items=10, window=0.1)
    errors: list[BaseException] = []

    def call(i: int) -> None:
        try:
            batcher.submit("bus", i)
        except ConnectionError as exc:
            errors.append(exc)

    with ThreadPoolExecutor(max_workers=3) as pool:
        list(pool.map(call, range(3)))
    assert len(errors) == 3


def test_a_wrong_number_of_results_is_an_error() -> None:
    batcher: MicroBatcher[str, int, str] = MicroBatcher(
        lambda key, items: [], max_items=10, window=0)
    with pytest.raises(RuntimeError, match="0 results for 1 items"):
        batcher.submit("bus", 1)


def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError):
        MicroBatcher(lambda k, i: i, max_items=0, window=0)
    with pytest.raises(ValueError):
        MicroBatcher(lambda k, i: i, max_items=1, window=-1)
