"""kill -9 of workers mid-stream loses nothing, on every transport."""

from __future__ import annotations

from typing import Any

import pytest

from tests.killrun import run_kill_scenario


@pytest.mark.slow
def test_sigkill_mid_stream_loses_nothing(transport_settings: Any) -> None:
    settings = transport_settings.model_copy(update={"lease_seconds": 2.0})
    figures = run_kill_scenario(settings, events=150, kills=3)
    print(figures.line(settings.transport_url.split(":")[0]))
    assert figures.kills == 3
    assert figures.lost == 0, figures
    assert figures.delivered == figures.published
    assert figures.unidentifiable == 0  # every duplicate carried its delivery's webhook-id
