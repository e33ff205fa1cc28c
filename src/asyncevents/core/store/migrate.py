"""Schema creation and upgrades through Alembic."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, inspect

from asyncevents.core.store.schema import metadata

__all__ = ["has_schema", "upgrade"]

_SCRIPTS = Path(__file__).resolve().parent.parent / "migrations"


def upgrade(engine: Engine) -> None:
    """Create or upgrade every asyncevents table to the latest revision."""
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def has_schema(engine: Engine) -> bool:
    """True when every table the code needs exists."""
    existing = set(inspect(engine).get_table_names())
    return set(metadata.tables) <= existing
