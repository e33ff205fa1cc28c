"""``/v1/deliveries``: Lucene search, export, trace, and replay."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import StreamingResponse

from asyncevents.api.auth import require
from asyncevents.api.deps import AppDep
from asyncevents.api.problems import Problem, field_errors
from asyncevents.api.schemas import DeliveryPage, ReplayQuery, ReplayResult, Trace
from asyncevents.api.services.deliveries import export_lines, replay_all, started
from asyncevents.core import search as engine
from asyncevents.core.search.results import trace_document
from asyncevents.errors import InvalidQuery

__all__ = ["router"]

router = APIRouter(prefix="/v1/deliveries", tags=["deliveries"])
_READ = [Depends(require("deliveries:read"))]
_REPLAY = [Depends(require("deliveries:replay"))]
_Q = Annotated[str, Query(max_length=4096, description="A Lucene query; empty or `*`: all.")]
_UUID = Annotated[str, Path(max_length=64, description="The delivery uuid.")]
_EXPORT_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}


def _check(q: str) -> str:
    with field_errors({InvalidQuery: "q"}):
        engine.check_query(q)
    return q


def _searching() -> AbstractContextManager[None]:
    """Running a checked query: the one error left is a search that ran out of time (``q``)."""
    return field_errors({InvalidQuery: "q"})


@router.get("", response_model=DeliveryPage, dependencies=_READ)
def search_deliveries(
    app: AppDep, q: _Q = "*",
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> dict[str, Any]:
    """Deliveries matching ``q``, newest first; pass ``next_cursor`` back as ``cursor``.

    Fields: ``uuid``, ``event_name``, ``subscription_id``, ``status``, ``success``,
    ``created``, ``sink``, ``recipient`` and ``data.<path>`` into the payload.
    """
    _check(q)
    with field_errors({InvalidQuery: "cursor"}):
        engine.check_cursor(cursor)
    with _searching():
        page = engine.search_deliveries(app.store, q, limit=limit, cursor=cursor)
    return {"items": [d.public() for d in page.items], "next_cursor": page.next_cursor}


@router.get("/export", dependencies=_READ, response_class=StreamingResponse,
            responses={200: {"content": {"text/csv": {}, "application/x-ndjson": {}},
                             "description": "Every match, streamed."}})
def export_deliveries(
    app: AppDep, q: _Q = "*",
    format: Annotated[Literal["csv", "jsonl"], Query()] = "csv",
) -> StreamingResponse:
    """Every delivery matching ``q`` as CSV or JSON lines, streamed (no size limit)."""
    _check(q)
    with _searching():
        rows = export_lines(started(engine.iter_deliveries(app.store, q)), format)
    return StreamingResponse(
        rows, media_type=_EXPORT_TYPES[format],
        headers={"Content-Disposition": f'attachment; filename="deliveries.{format}"'},
    )


@router.post("/replay", response_model=ReplayResult, status_code=202, dependencies=_REPLAY,
             responses={409: {"description": "More deliveries match than `max`."}})
def replay_matching(body: ReplayQuery, app: AppDep) -> dict[str, Any]:
    """Replay every delivery matching a query (nothing when more than ``max`` match)."""
    _check(body.q)
    with _searching():
        matched = engine.count_deliveries(app.store, body.q)
    if matched > body.max:
        raise Problem(409, f"{matched} deliveries match, more than max={body.max}; "
                           "narrow the query or raise max", kind="too-many", field="max")
    if body.dry_run:
        return {"matched": matched, "replayed": 0}
    with _searching():
        ids = (d.id for d in started(engine.iter_deliveries(app.store, body.q)))
    done = replay_all(app, ids)
    return {"matched": matched, "replayed": done}


@router.get("/{delivery_id}", response_model=Trace, dependencies=_READ)
def trace_delivery(delivery_id: _UUID, app: AppDep) -> dict[str, Any]:
    """One delivery with every attempt (the trace)."""
    return trace_document(app.store, delivery_id)


@router.post("/{delivery_id}/replay", response_model=ReplayResult, status_code=202,
             dependencies=_REPLAY)
def replay_delivery(delivery_id: _UUID, app: AppDep) -> dict[str, Any]:
    """Deliver again, under the same uuid, with a fresh retry budget."""
    app.replay(delivery_id)
    return {"matched": 1, "replayed": 1}
