"""Column types shared by the tables that live beside the application's data.

The SQL queue (:mod:`asyncevents.core.transport.sql.schema`) and the outbox
(:mod:`asyncevents.core.store.outbox`) are plain tables, created without
migrations in whichever database they are given; both need the same three
portable types.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, DateTime, Integer, Text
from sqlalchemy.dialects import mysql

__all__ = ["LONG_TEXT", "MICRO_TIME", "ROW_ID"]

#: Naive UTC times, with microseconds on MariaDB/MySQL too (their default is seconds).
MICRO_TIME = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
#: An ever-growing row id; SQLite's ``INTEGER PRIMARY KEY`` is its 64-bit rowid.
ROW_ID = BigInteger().with_variant(Integer(), "sqlite")
#: A message body: ``LONGTEXT`` on MariaDB/MySQL, whose ``TEXT`` stops at 64 KB.
LONG_TEXT = Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
