"""The CLI says what it did and what is missing (issue 23, item 14).

- ``migrate`` says whether it created the schema, upgraded it (from, to) or
  found it up to date, with the revision;
- ``sinks`` shows a shipped sink whose extra is not installed as
  "needs asyncevents[aws]", not as a failure; a worker logs the plugins that
  were not loaded when it starts;
- ``subscribe`` needs no ``--token`` for a sink that does not sign.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from alembic import command
from alembic.config import Config
from structlog.testing import capture_logs

from asyncevents.cli import main
from asyncevents.core.app import App
from asyncevents.core.plugins import ENTRY_POINT_GROUP
from asyncevents.core.settings import Settings
from asyncevents.core.store import migrate
from asyncevents.core.worker.worker import WorkerLimits
from tests.helpers import run_cli


@pytest.fixture(autouse=True)
def _keep_logging_config() -> Iterator[None]:
    """``main()`` configures structlog (level, format): put the suite's back after."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "asyncevents.toml").write_text(
        'allowed_networks = ["127.0.0.0/8"]\nstrict_events = false\n'
        'transport_url = "sqla+sqlite:///queue.db"\n')
    return tmp_path


def test_migrate_on_an_empty_database_says_it_created_the_schema(workdir: Path) -> None:
    head = migrate.head_revision()
    assert head is not None
    first = run_cli("migrate", cwd=workdir)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == f"created the asyncevents schema at revision {head}"
    again = run_cli("migrate", cwd=workdir)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == f"the asyncevents schema is up to date (revision {head})"


def test_migrate_on_an_older_schema_says_from_which_revision(workdir: Path) -> None:
    config = Config()
    config.set_main_option("script_location", str(migrate._SCRIPTS))
    config.set_main_option("sqlalchemy.url", f"sqlite:///{workdir / 'asyncevents.db'}")
    from sqlalchemy import create_engine

    engine = create_engine(f"sqlite:///{workdir / 'asyncevents.db'}")
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0006")
    engine.dispose()
    result = run_cli("migrate", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ("upgraded the asyncevents schema from revision 0006 to "
                                     f"{migrate.head_revision()}")


def test_the_migration_describes_itself() -> None:
    assert migrate.Migration(None, "0007").created
    assert not migrate.Migration("0006", "0007").created
    assert "0006 to 0007" in migrate.Migration("0006", "0007").describe()


@pytest.fixture
def without_boto3(monkeypatch: pytest.MonkeyPatch) -> None:
    """boto3 cannot be imported, as without the ``aws`` extra; eventbridge not imported yet."""
    monkeypatch.setitem(sys.modules, "boto3", None)  # type: ignore[arg-type]
    monkeypatch.delitem(sys.modules, "asyncevents.sinks.eventbridge", raising=False)


@pytest.fixture
def broken_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    """One more entry point, whose module does not exist (not for want of an extra)."""
    real = md.entry_points
    broken = md.EntryPoint(name="broken", value="asyncevents_no_such_module",
                           group=ENTRY_POINT_GROUP)

    def entry_points(**params: Any) -> Any:
        found = real(**params)
        return [*found, broken] if params.get("group") == ENTRY_POINT_GROUP else found

    monkeypatch.setattr(md, "entry_points", entry_points)


def _cli(workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
         *args: str) -> tuple[int, str, str]:
    for name in [n for n in os.environ if n.startswith("ASYNCEVENTS_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(workdir)
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_sinks_shows_a_sink_whose_extra_is_missing_as_needing_it(
        workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        without_boto3: None, broken_plugin: None) -> None:
    code, out, err = _cli(workdir, monkeypatch, capsys, "sinks", "--json")
    assert code == 0, err
    listed = json.loads(out)
    assert [m["plugin"] for m in listed["unavailable"]] == ["eventbridge"]
    assert listed["unavailable"][0]["needs"] == "asyncevents[aws]"
    assert listed["unavailable"][0]["missing"] == "boto3"
    # Not a failure; the plugin that is broken is one.
    assert [f["plugin"] for f in listed["failed"]] == ["broken"]
    assert {s["name"] for s in listed["sinks"]} >= {"http", "python"}

    code, out, err = _cli(workdir, monkeypatch, capsys, "sinks")
    assert code == 0, err
    row = next(line for line in out.splitlines() if "eventbridge" in line)
    assert "needs asyncevents[aws]" in row and "pip install 'asyncevents[aws]'" in row
    failed = out[out.index("Failed plugins"):]
    assert "broken" in failed and "eventbridge" not in failed


def test_subscribing_to_a_sink_whose_extra_is_missing_says_what_to_install(
        workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        without_boto3: None) -> None:
    code, _, err = _cli(workdir, monkeypatch, capsys, "subscribe", "x.y", "my-bus",
                        "--sink", "eventbridge")
    assert code == 1
    assert err.count("\n") == 1
    assert "needs asyncevents[aws]" in err and "pip install 'asyncevents[aws]'" in err


def test_a_worker_logs_the_plugins_not_loaded_when_it_starts(
        make_settings: Callable[..., Settings], without_boto3: None,
        broken_plugin: None) -> None:
    app = App(make_settings())
    try:
        with capture_logs() as logs:
            app.worker(WorkerLimits(max_idle_time=0.1))
    finally:
        app.close()
    failed = [e for e in logs if e["event"] == "plugin failed to load"]
    assert len(failed) == 1 and failed[0]["log_level"] == "warning"
    assert failed[0]["plugin"] == "broken" and "asyncevents_no_such_module" in failed[0]["error"]
    missing = [e for e in logs if e.get("plugin") == "eventbridge"]
    assert len(missing) == 1 and missing[0]["needs"] == "asyncevents[aws]"
    assert missing[0]["install"] == "pip install 'asyncevents[aws]'"


BUS = "arn:aws:events:eu-west-1:123456789012:event-bus/shop"


def test_subscribe_needs_no_token_for_a_sink_that_does_not_sign(
        workdir: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _cli(workdir, monkeypatch, capsys, "subscribe", "sales.order.created",
                          BUS, "--sink", "eventbridge", "--json")
    assert code == 0, err
    assert err == ""  # no warning either
    created = json.loads(out)
    assert created["sink"] == "eventbridge" and "token" not in json.dumps(created)


def test_subscribe_still_needs_a_token_for_a_sink_that_signs(
        workdir: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _cli(workdir, monkeypatch, capsys, "subscribe", "sales.order.created",
                          "http://127.0.0.1:9/hook")
    assert code == 2 and out == ""
    assert err.count("\n") == 1
    assert "the http sink signs every delivery" in err and "--token" in err
    code, _, err = _cli(workdir, monkeypatch, capsys, "subscribe", "sales.order.created",
                        "http://127.0.0.1:9/hook", "--token", "")
    assert code == 1 and err.count("\n") == 1
    assert err.startswith("error: --token: a verification token is required")
    assert not (workdir / "asyncevents.db").exists() or _subscriptions(workdir) == 0


def _subscriptions(workdir: Path) -> int:
    from tests.helpers import sqlite_rows

    return sqlite_rows(workdir / "asyncevents.db", "asyncevents_subscription")


def test_a_worker_that_does_not_start_says_so_in_json_with_log_json(workdir: Path) -> None:
    result = run_cli("worker", "--only-if-waiting", cwd=workdir,
                     env={"ASYNCEVENTS_LOG_JSON": "true"})
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines, "nothing said"
    parsed = [json.loads(line) for line in lines]  # every line is JSON: no plain text
    assert any(entry["event"] == "worker not started" for entry in parsed), parsed
