from __future__ import annotations

import pytest

from asyncevents.core.retry.policy import RetryPolicy
from asyncevents.errors import ConfigError


def test_default_is_magentos_quadratic() -> None:
    policy = RetryPolicy()
    assert [policy.delay(d) for d in range(1, 6)] == [1, 4, 9, 16, 25]
    assert policy.delay(10) == 60  # capped by max_backoff


@pytest.mark.parametrize(
    ("backoff", "expected"),
    [
        ("exponential", [2, 4, 8, 16]),
        ("linear", [2, 4, 6, 8]),
        ("fixed", [2, 2, 2, 2]),
        ("quadratic", [2, 8, 18, 32]),
    ],
)
def test_backoff_kinds(backoff: str, expected: list[float]) -> None:
    policy = RetryPolicy(backoff=backoff, base=2)  # type: ignore[arg-type]
    assert [policy.delay(d) for d in range(1, 5)] == expected


def test_jitter_stays_below_the_unjittered_delay() -> None:
    policy = RetryPolicy(jitter=0.5)
    delays = {policy.delay(3) for _ in range(200)}
    assert all(4.5 <= d <= 9 for d in delays)
    assert len(delays) > 1


def test_gives_up_after_max_deaths_or_age() -> None:
    policy = RetryPolicy(max_deaths=2, max_age=100)
    assert not policy.gives_up(2, 0)
    assert policy.gives_up(3, 0)
    assert policy.gives_up(1, 100)


def test_override_and_validation() -> None:
    policy = RetryPolicy().override({"max_deaths": 1, "backoff": "fixed"})
    assert policy.max_deaths == 1 and policy.delay(4) == 1
    with pytest.raises(ConfigError, match="backoff"):
        RetryPolicy.check_overrides({"backoff": "sometimes"})
    with pytest.raises(ConfigError, match="colour"):
        RetryPolicy.check_overrides({"colour": "red"})
