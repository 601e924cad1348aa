"""Prometheus metrics (/metrics) and the request middleware that feeds them; /healthz."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from sqlalchemy import text
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint

REQUESTS = Counter("http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram(
    "http_request_duration_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
OUTBOX_DEPTH = Gauge("outbox_messages", "Outbox messages by status", ["status"])
OUTBOX_OUTCOMES = Counter(
    "outbox_delivery_outcomes_total", "Outbox delivery attempts", ["channel", "outcome"]
)
REGISTRY_BREAKER = Gauge("registry_breaker_open", "1 when the registry circuit breaker is open")
PENDING_WRITES = Gauge("registry_pending_writes", "Registry writes queued while the registry was down")


def _route_name(request: Request) -> str:
    """The route template (`/c/{token}`), never the raw path: labels must stay few."""
    route = request.scope.get("route")
    return getattr(route, "path", None) or "unmatched"


class MetricsMiddleware(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        started = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            route = _route_name(request)
            LATENCY.labels(request.method, route).observe(time.perf_counter() - started)
            REQUESTS.labels(request.method, route, str(status)).inc()


router = APIRouter()


@router.get("/healthz", include_in_schema=True)
async def healthz(request: Request) -> JSONResponse:
    state = request.app.state
    try:
        async with state.db_engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure means "not healthy"
        return JSONResponse(
            {"status": "unavailable", "database": f"down: {type(exc).__name__}"}, status_code=503
        )
    body: dict[str, object] = {"status": "ok"}
    degraded = {}
    registry = getattr(state, "registry", None)
    breaker = getattr(registry, "breaker", None)
    if breaker is not None and breaker.state != "closed":
        degraded["registry"] = f"circuit {breaker.state}"
    if degraded:
        body["degraded"] = degraded
    return JSONResponse(body)


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    state = request.app.state
    outbox = getattr(state, "outbox", None)
    if outbox is not None:
        try:
            for status, count in (await outbox.depth()).items():
                OUTBOX_DEPTH.labels(status).set(count)
        except Exception:  # noqa: BLE001 - metrics must answer even when the database does not
            pass
    registry = getattr(state, "registry", None)
    breaker = getattr(registry, "breaker", None)
    if breaker is not None:
        REGISTRY_BREAKER.set(1 if breaker.state == "open" else 0)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
