"""Fixtures: no ASYNCEVENTS_* or AWS settings from the machine, fake AWS credentials."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from moto import mock_aws

from asyncevents import Settings

REGION = "eu-west-1"


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.startswith(("ASYNCEVENTS_", "AWS_")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing-secret")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Core settings for one test: its own SQLite queue and store in tmp_path."""
    return Settings(strict_events=False, polling_interval=0.05, http_connect_timeout=1.0,
                    http_timeout=2.0)


@pytest.fixture
def aws() -> Iterator[None]:
    """Every AWS call in the test goes to moto, in process."""
    with mock_aws():
        yield
