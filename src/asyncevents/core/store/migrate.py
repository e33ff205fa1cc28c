"""Schema creation and upgrades through Alembic."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect

from asyncevents.core.store.schema import metadata

__all__ = ["VERSION_TABLE", "has_schema", "is_behind", "upgrade"]

_SCRIPTS = Path(__file__).resolve().parent.parent / "migrations"
VERSION_TABLE = "asyncevents_alembic_version"
"""Where Alembic records the schema's revision (named so as not to meet an app's own)."""


def upgrade(engine: Engine) -> None:
    """Create or upgrade every asyncevents table to the latest revision."""
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def has_schema(engine: Engine) -> bool:
    """True when every table the code needs exists, or Alembic has versioned the schema.

    A versioned schema missing tables of later revisions is one to upgrade
    (:func:`is_behind`), not one to create.
    """
    existing = set(inspect(engine).get_table_names())
    return VERSION_TABLE in existing or set(metadata.tables) <= existing


@lru_cache(maxsize=1)
def _revisions() -> tuple[str | None, frozenset[str]]:
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    scripts = ScriptDirectory.from_config(config)
    return scripts.get_current_head(), frozenset(r.revision for r in scripts.walk_revisions())


def is_behind(engine: Engine) -> bool:
    """True when the schema is at a revision older than this code's (an upgrade is due).

    A revision this code does not know (a newer asyncevents migrated it) is
    not behind: nothing here can upgrade it.
    """
    with engine.connect() as connection:
        context = MigrationContext.configure(connection,
                                             opts={"version_table": VERSION_TABLE})
        current = context.get_current_revision()
    head, known = _revisions()
    return current is not None and current != head and current in known
