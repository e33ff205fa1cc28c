"""Operations: ``/healthz``, ``/metrics``, ``/v1/sinks`` and ``/v1/tokens`` (admin)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from asyncevents.api.auth import require
from asyncevents.api.deps import AppDep
from asyncevents.api.problems import Problem
from asyncevents.api.schemas import Health, SinkList, Token, TokenCreate, TokenCreated
from asyncevents.api.services import tokens
from asyncevents.api.services.metrics import render
from asyncevents.core.app import App
from asyncevents.core.clock import utcnow
from asyncevents.errors import ConfigError

__all__ = ["health", "router"]

log = structlog.get_logger("asyncevents.api")
router = APIRouter()
_ADMIN = [Depends(require("admin"))]


def health(app: App) -> dict[str, Any]:
    """Whether the database and the transport answer (failures are logged, not shown)."""
    checks: dict[str, str] = {}
    try:
        app.store.ping()
        checks["database"] = "ok"
    except Exception as exc:
        log.warning("health check failed", part="database", error=str(exc))
        checks["database"] = "unavailable"
    try:
        app.transport.check(timeout=3.0)
        checks["transport"] = "ok"
    except Exception as exc:
        log.warning("health check failed", part="transport", error=str(exc))
        checks["transport"] = "unavailable"
    ok = all(v == "ok" for v in checks.values())
    return {"status": "ok" if ok else "unavailable", "checks": checks}


@router.get("/healthz", tags=["operations"], response_model=Health,
            responses={503: {"model": Health, "description": "A dependency is down."}})
def healthz(app: AppDep) -> JSONResponse:
    """Liveness and readiness: 200 when the database and the transport answer, else 503.

    Needs no token, and says only which part is down (details go to the log).
    """
    result = health(app)
    return JSONResponse(result, status_code=200 if result["status"] == "ok" else 503)


@router.get("/metrics", tags=["operations"], dependencies=[Depends(require("deliveries:read"))],
            response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}},
                             "description": "Prometheus text format."}})
def metrics(request: Request) -> Response:
    """Prometheus metrics: deliveries by sink and status, attempt latency, queue depths."""
    return Response(render(request.app.state.metrics), media_type=CONTENT_TYPE_LATEST)


@router.get("/v1/sinks", tags=["operations"], response_model=SinkList,
            dependencies=[Depends(require("subscriptions:read"))])
def list_sinks(app: AppDep) -> dict[str, Any]:
    """Installed sinks with the distribution providing each, those whose extra is not
    installed (``needs``: ``asyncevents[aws]``), and plugins that failed."""
    plugins = app.plugins
    sinks = [{"name": s.name, "plugin": s.plugin, "distribution": s.distribution,
              "version": s.version} for s in sorted(plugins.sinks().values(),
                                                    key=lambda s: s.name)]
    failed = [{"plugin": f.plugin, "distribution": f.distribution, "error": f.error}
              for f in plugins.failures]
    unavailable = [{"plugin": m.plugin, "distribution": m.distribution, "version": m.version,
                    "needs": m.needs, "missing": m.module} for m in plugins.unavailable]
    return {"sinks": sinks, "unavailable": unavailable, "failed": failed}


@router.post("/v1/tokens", tags=["tokens"], status_code=201, response_model=TokenCreated,
             dependencies=_ADMIN)
def create_token(body: TokenCreate, app: AppDep) -> dict[str, Any]:
    """Create an API token; its secret (``token``) is in this answer only.

    With ``expires_in`` (``90d``...) or ``expires_at`` it is refused from then on.
    """
    try:
        token, secret = tokens.create_token(app.store, body.name, body.scopes,
                                            expires_at=_expiry(body))
    except ConfigError as exc:
        raise Problem.from_error(exc, exc.field) from None
    return {**token.public(), "token": secret}


def _expiry(body: TokenCreate) -> datetime | None:
    """When a new token expires: ``expires_in`` from now, or ``expires_at``, or never."""
    if body.expires_in is not None and body.expires_at is not None:
        raise Problem(422, "give expires_in or expires_at, not both", field="expires_at")
    if body.expires_in is not None:
        return utcnow() + tokens.parse_lifetime(body.expires_in, "expires_in")
    if body.expires_at is not None:
        return tokens.check_expiry(body.expires_at, "expires_at")
    return None


@router.get("/v1/tokens", tags=["tokens"], response_model=list[Token], dependencies=_ADMIN)
def list_tokens(app: AppDep, revoked: bool = False) -> list[dict[str, Any]]:
    """API tokens, without secrets."""
    return [t.public() for t in tokens.list_tokens(app.store, revoked=revoked)]


@router.delete("/v1/tokens/{token_id}", tags=["tokens"], status_code=204,
               dependencies=_ADMIN)
def revoke_token(token_id: Annotated[str, Path(max_length=64)], app: AppDep) -> Response:
    """Revoke a token at once."""
    tokens.revoke_token(app.store, token_id)
    return Response(status_code=204)
