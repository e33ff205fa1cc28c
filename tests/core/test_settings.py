from __future__ import annotations

from pathlib import Path

import pytest

from asyncevents.core.settings import load_settings
from asyncevents.errors import ConfigError


def test_defaults_are_the_embedded_sqlite_files() -> None:
    settings = load_settings()
    assert settings.transport_url == "sqla+sqlite:///asyncevents-queue.db"
    assert settings.database_url == "sqlite:///asyncevents.db"
    assert settings.strict_events is True
    assert settings.allowed_networks == []


def test_toml_file_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "asyncevents.toml").write_text(
        'max_deaths = 3\nbackoff = "linear"\n'
        '[events."sales.order.created"]\ndescription = "placed"\n'
        'resolver = "shop.events:order"\n'
    )
    settings = load_settings()
    assert settings.max_deaths == 3 and settings.backoff == "linear"
    assert settings.events["sales.order.created"].resolver == "shop.events:order"
    monkeypatch.setenv("ASYNCEVENTS_MAX_DEATHS", "7")  # the environment wins
    monkeypatch.setenv("ASYNCEVENTS_ALLOWED_NETWORKS", "127.0.0.0/8, ::1/128")
    settings = load_settings()
    assert settings.max_deaths == 7
    assert settings.allowed_networks == ["127.0.0.0/8", "::1/128"]


def test_config_env_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "other.toml"
    path.write_text("strict_events = false\n")
    monkeypatch.setenv("ASYNCEVENTS_CONFIG", str(path))
    assert load_settings().strict_events is False
    monkeypatch.setenv("ASYNCEVENTS_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="not a file"):
        load_settings()


@pytest.mark.parametrize(
    ("env", "value", "needle"),
    [
        ("ASYNCEVENTS_MAX_DEATHS", "many", "max_deaths"),
        ("ASYNCEVENTS_BACKOFF", "sometimes", "backoff"),
        ("ASYNCEVENTS_JITTER", "2", "jitter"),
    ],
)
def test_bad_values_are_one_line_config_errors(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, needle: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_broken_toml_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "asyncevents.toml").write_text("max_deaths = = 3\n")
    with pytest.raises(ConfigError, match="configuration file"):
        load_settings()
