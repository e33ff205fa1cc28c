"""The CLI says what it did and what is missing (issue 23, item 14).

- ``migrate`` says whether it created the schema, upgraded it (from, to) or
  found it up to date, with the revision;
- ``sinks`` shows a shipped sink whose extra is not installed as
  "needs asyncevents[aws]", not as a failure; a worker logs the plugins that
  were not loaded when it starts;
- ``subscribe`` needs no ``--token`` for a sink that does not sign.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config

from asyncevents.core.store import migrate
from tests.helpers import run_cli


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
