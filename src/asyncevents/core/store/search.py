"""Running compiled searches: a page of matching deliveries, newest first, or their count.

The WHERE clause comes from :mod:`asyncevents.core.search.sql`; this module
only orders, pages and runs it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, and_, func, or_, select

from asyncevents.core.models import Delivery
from asyncevents.core.store.base import StoreBase
from asyncevents.core.store.deliveries import delivery_from_row
from asyncevents.core.store.schema import deliveries

__all__ = ["SearchQueries"]


def _before(position: tuple[datetime, str]) -> ColumnElement[bool]:
    created, delivery_id = position
    col = deliveries.c
    return or_(col.created_at < created, and_(col.created_at == created, col.id < delivery_id))


class SearchQueries(StoreBase):
    """Searches over the store's deliveries."""

    def search_page(self, where: ColumnElement[bool], *, limit: int,
                    before: tuple[datetime, str] | None = None) -> list[Delivery]:
        """Up to ``limit`` deliveries matching ``where``, newest first.

        With ``before`` (a delivery's created time and uuid), only those that
        come after it in that order: a keyset page, which newer rows never shift.
        """
        query = select(deliveries).where(where)
        if before is not None:
            query = query.where(_before(before))
        query = query.order_by(deliveries.c.created_at.desc(),
                               deliveries.c.id.desc()).limit(limit)
        with self.begin() as conn:
            return [delivery_from_row(row) for row in conn.execute(query).mappings()]

    def count_matching(self, where: ColumnElement[bool]) -> int:
        """How many deliveries match ``where``."""
        query = select(func.count()).select_from(deliveries).where(where)
        with self.begin() as conn:
            return int(conn.execute(query).scalar_one())
