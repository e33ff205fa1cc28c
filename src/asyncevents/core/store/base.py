"""What every part of the store shares: the engine, the token cipher, transactions."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from asyncevents.core.store.crypto import TokenCipher
from asyncevents.errors import StoreError

__all__ = ["StoreBase"]


def _short(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", exc) or exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class StoreBase:
    """The engine and the transactions that the store's parts run their queries in."""

    def __init__(self, engine: Engine, cipher: TokenCipher | None = None) -> None:
        self.engine = engine
        self.cipher = cipher or TokenCipher(None)

    @property
    def dialect(self) -> str:
        """The database's dialect name: ``sqlite``, ``postgresql``, ``mysql``, ``mariadb``."""
        return self.engine.dialect.name

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except (OperationalError, DBAPIError) as exc:
            if isinstance(exc, IntegrityError):
                raise
            where = self.engine.url.render_as_string(hide_password=True)
            raise StoreError(f"database error at {where}: {_short(exc)}") from exc

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A transaction, with database failures turned into ``StoreError``."""
        with self._errors(), self.engine.begin() as conn:
            yield conn
