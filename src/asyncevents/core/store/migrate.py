"""Schema creation and upgrades through Alembic."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect

from asyncevents.core.store.schema import metadata

__all__ = ["VERSION_TABLE", "Migration", "current_revision", "has_schema", "head_revision",
           "is_behind", "upgrade"]

_SCRIPTS = Path(__file__).resolve().parent.parent / "migrations"
VERSION_TABLE = "asyncevents_alembic_version"
"""Where Alembic records the schema's revision (named so as not to meet an app's own)."""


@dataclass(frozen=True)
class Migration:
    """What :func:`upgrade` did: the schema's revision before (None: there was no schema) and
    after."""

    before: str | None
    after: str | None

    @property
    def created(self) -> bool:
        """True when the schema did not exist and was created."""
        return self.before is None and self.after is not None

    def describe(self) -> str:
        """One line for the operator: created, upgraded (from, to), or already up to date."""
        if self.created:
            return f"created the asyncevents schema at revision {self.after}"
        if self.before != self.after:
            return f"upgraded the asyncevents schema from revision {self.before} to {self.after}"
        return f"the asyncevents schema is up to date (revision {self.after})"


def upgrade(engine: Engine) -> Migration:
    """Create or upgrade every asyncevents table to the latest revision; say what was done."""
    before = current_revision(engine)
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    return Migration(before, current_revision(engine))


def current_revision(engine: Engine) -> str | None:
    """The revision Alembic recorded for the schema (None: no asyncevents schema yet)."""
    with engine.connect() as connection:
        context = MigrationContext.configure(connection,
                                             opts={"version_table": VERSION_TABLE})
        return context.get_current_revision()


def head_revision() -> str | None:
    """The latest revision this code knows (what :func:`upgrade` brings a schema to)."""
    return _revisions()[0]


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
    current = current_revision(engine)
    head, known = _revisions()
    return current is not None and current != head and current in known
