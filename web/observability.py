"""Operations: /healthz, /metrics (Prometheus), the request-metrics middleware, and the metric
hooks that `instrument(app.state)` puts on the wired objects at start-up.

Metrics
- `http_requests_total`, `http_request_duration_seconds` — per method and route template.
- `outbox_messages{status}` and `outbox_oldest_pending_seconds` — the outbox queue (read at scrape).
- `outbox_delivery_outcomes_total{channel,outcome}` — sent / retry / failed / unreachable / local,
  from the outbox worker's `on_outcome` hook.
- `otp_checks_total{outcome}` — typed one-time codes: ok / wrong / expired / locked;
  `otp_refusals_total{reason}` — codes not sent: locked / too_many / resend_wait.
- `registry_call_duration_seconds{operation,outcome}` — every call to the registry backend
  (embedded SQL or FHIR), outcome ok / not_found / unavailable / error / cancelled (timed out).
- `registry_breaker_open`, `registry_breaker_state{state}` and `registry_pending_writes` (reports
  queued while the registry was down) — read at scrape.

/healthz answers 200 `{"status": "ok"}` while the database answers, with `"degraded": {...}`
naming what is not well (registry circuit open or registry unreachable, outbox backlog too old,
queued registry writes, Redis unreachable when REDIS_URL is set, Telegram not connected);
503 only when the database does not answer.

With METRICS_TOKEN set, /metrics and the API description (/docs, /redoc, /openapi.json) demand
`Authorization: Bearer <METRICS_TOKEN>` (`OperatorPagesGuard`: 401 without it, 403 when wrong).
Access log (ACCESS_LOG, on by default): one JSON line per request, `"msg": "POST /ussd 200 1.2ms"`,
written by `MetricsMiddleware` (see `AccessLog`); uvicorn's own access log is not used.

OpenTelemetry: FastAPI's own instrumentation looks up the global OpenTelemetry providers on every
request (~35 µs of CPU, bench/profile_ussd.py); `fastapi_telemetry` turns it on only when the
operator configures OpenTelemetry (any `OTEL_*` variable, or FASTAPI_OTEL_AUTO_CONFIGURE=true).

Labels hold only fixed vocabularies (route templates, HTTP methods, statuses, outcomes): never a
path, a phone number, an ID or a token.

In a multi-process deployment each worker process exposes its own counters (scrape every worker,
or sum them); the gauges read at scrape come from the shared database and agree.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from sqlalchemy import func, select, text
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from outbox.tables import OutboxRow
from registry_client.clock import as_utc, utc_now
from registry_client.errors import RecordNotFound, RegistryUnavailable
from registry_client.pending_writes import PendingWriteRow
from web.api_answers import Health

log = logging.getLogger(__name__)


def fastapi_telemetry(environ: Mapping[str, str]) -> dict[str, Any]:
    """FastAPI's OpenTelemetry settings: as FastAPI defaults when the operator configured
    OpenTelemetry in the environment, else off (see the module docstring)."""
    configured = environ.get("FASTAPI_OTEL_AUTO_CONFIGURE", "").lower() == "true" or any(
        name.startswith("OTEL_") for name in environ
    )
    return {} if configured else {"tracing": False, "metrics": False, "logs": False}

REQUESTS = Counter("http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram(
    "http_request_duration_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
OUTBOX_DEPTH = Gauge("outbox_messages", "Outbox messages by status", ["status"])
OUTBOX_OLDEST = Gauge("outbox_oldest_pending_seconds", "Age of the oldest due, unsent outbox message")
OUTBOX_OUTCOMES = Counter(
    "outbox_delivery_outcomes_total", "Outbox delivery attempts", ["channel", "outcome"]
)
OTP_CHECKS = Counter("otp_checks_total", "One-time codes typed, by outcome", ["outcome"])
OTP_REFUSALS = Counter("otp_refusals_total", "One-time codes not sent, by reason", ["reason"])
REGISTRY_LATENCY = Histogram(
    "registry_call_duration_seconds",
    "Calls to the registry backend",
    ["operation", "outcome"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
REGISTRY_BREAKER = Gauge("registry_breaker_open", "1 when the registry circuit breaker is open")
REGISTRY_BREAKER_STATE = Gauge(
    "registry_breaker_state", "Registry circuit breaker state (1 = current)", ["state"]
)
PENDING_WRITES = Gauge("registry_pending_writes", "Registry writes queued while the registry was down")

BREAKER_STATES = ("closed", "open", "half-open")
OUTBOX_BACKLOG_LIMIT = timedelta(minutes=5)  # a due message older than this: /healthz says degraded
CHECK_TIMEOUT = 2.0  # seconds for each dependency check of /healthz
REGISTRY_PROBE_EVERY = 15.0  # seconds a registry probe result is reused
REFUSAL_REASONS = {
    "login.locked": "locked",
    "login.too_many_codes": "too_many",
    "login.resend_wait": "resend_wait",
}


# -- the request middleware ---------------------------------------------------------------------
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _method(scope: Scope) -> str:
    """The HTTP method, or "other": a client may send any token there, and labels must stay few."""
    method = str(scope.get("method", ""))
    return method if method in METHODS else "other"


class AccessLog:
    """One line per request, written straight to stderr: `{"ts", "level", "logger": "access",
    "msg": "POST /ussd 200 1.2ms"}` — the JSON shape of every other log line, but built from a
    cached prefix per (method, route) instead of a LogRecord, filters and a JSON encode: a few µs.

    Only a request whose line cannot hold anything personal or secret takes that way: a matched
    route without path parameters (its path is the template) and no query string. Any other line
    (`/c/{token}`, `?token=`, an unmatched path) goes through the `vaxchannel.access` logger, so
    the configured masking and secret redaction apply to it as to every log line."""

    def __init__(self) -> None:
        self.prefixes: dict[tuple[str, str], str] = {}
        self.second = -1
        self.stamp = ""
        self.slow = logging.getLogger("vaxchannel.access")

    def write(self, scope: Scope, method: str, route: str | None, status: int, seconds: float) -> None:
        ms = seconds * 1000
        if route is None or "{" in route or scope.get("query_string") or route != scope.get("path"):
            path = scope.get("path", "")
            query = scope.get("query_string", b"")
            target = f"{path}?{query.decode('latin-1')}" if query else path
            self.slow.info("%s %s %d %.1fms", method, target, status, ms)
            return
        now = time.time()
        second = int(now)
        if second != self.second:
            self.second = second
            self.stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        prefix = self.prefixes.get((method, route))
        if prefix is None:
            prefix = self.prefixes[(method, route)] = json.dumps(f"{method} {route}")[:-1]
        sys.stderr.write(
            f'{{"ts": "{self.stamp}.{int((now - second) * 1000):03d}+00:00", "level": "info", '
            f'"logger": "access", "msg": {prefix} {status} {ms:.1f}ms"}}\n'
        )


ACCESS_LOG = AccessLog()
# the labelled children of the request metrics; few keys: methods, route templates and statuses
_LABELLED: dict[tuple[str, str | None, int], tuple[Any, Any]] = {}


def record_request(
    scope: Scope, method: str, route: str | None, status: int, seconds: float, access_log: bool
) -> None:
    """The request's metrics and (when on) its access-log line."""
    key = (method, route, status)
    metrics = _LABELLED.get(key)
    if metrics is None:  # `labels()` costs more than the update: once per (method, route, status)
        label = route or "unmatched"
        metrics = _LABELLED[key] = (
            LATENCY.labels(method, label),
            REQUESTS.labels(method, label, str(status)),
        )
    metrics[0].observe(seconds)
    metrics[1].inc()
    if access_log:
        ACCESS_LOG.write(scope, method, route, status, seconds)


class MetricsMiddleware:
    """Plain ASGI (not BaseHTTPMiddleware, which cost ~0.4 ms a request: a task and memory streams
    around every request and its body — as much as a whole bare FastAPI request here).
    `access_log`: one line per request (ACCESS_LOG, on by default; see `AccessLog`)."""

    def __init__(self, app: ASGIApp, access_log: bool = False) -> None:
        self.app, self.access_log = app, access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", None)
            record_request(
                scope, _method(scope), route, status, time.perf_counter() - started, self.access_log
            )


OPERATOR_PATHS = frozenset({"/metrics", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})


class OperatorPagesGuard:
    """METRICS_TOKEN set: the operator pages answer only `Authorization: Bearer <METRICS_TOKEN>`
    (compared in constant time); 401 without credentials, 403 with wrong ones."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app, self.expected = app, f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].rstrip("/") not in OPERATOR_PATHS:
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        if hmac.compare_digest(given, self.expected):
            await self.app(scope, receive, send)
            return
        status, text = (401, "credentials required") if not given else (403, "wrong credentials")
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
        await JSONResponse({"detail": text}, status, headers=headers)(scope, receive, send)


# -- hooks on the wired objects -------------------------------------------------------------------
def count_outcome(channel: str, outcome: str) -> None:
    OUTBOX_OUTCOMES.labels(channel, outcome).inc()


def _registry_outcome(exc: BaseException | None) -> str:
    if exc is None:
        return "ok"
    if isinstance(exc, RecordNotFound):
        return "not_found"
    if isinstance(exc, RegistryUnavailable):
        return "unavailable"
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"
    return "error"


def _timed(operation: str, call: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(call)
    async def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        failure: BaseException | None = None
        try:
            return await call(*args, **kwargs)
        except BaseException as exc:
            failure = exc
            raise
        finally:
            REGISTRY_LATENCY.labels(operation, _registry_outcome(failure)).observe(
                time.perf_counter() - started
            )

    timed.__vaxchannel_timed__ = True  # type: ignore[attr-defined]
    return timed


REGISTRY_OPERATIONS = (
    "find_person",
    "get_person",
    "find_persons_by_phone",
    "create_person",
    "update_contact",
    "list_sites",
    "get_site",
    "upsert_site",
    "list_doses",
    "record_dose",
    "submit_correction",
    "get_correction",
    "list_corrections",
    "resolve_correction",
    "reassign_correction",
    "add_attachment",
    "mark_in_review",
    "audit",
)


def instrument_registry_backend(backend: Any) -> None:
    """Times every Registry call of `backend` (the object behind the resilience wrapper): the
    methods are wrapped on the instance, so its type and identity stay what they were."""
    for name in REGISTRY_OPERATIONS:
        method = getattr(backend, name, None)
        if method is None or getattr(method, "__vaxchannel_timed__", False):
            continue
        setattr(backend, name, _timed(name, method))


def instrument_otp(otp: Any) -> None:
    """Counts typed codes by outcome and codes refused, on the engine's OtpService instance."""
    check, refusal = otp.check, otp.reserve_send
    if getattr(check, "__vaxchannel_timed__", False):
        return

    @functools.wraps(check)
    async def counted_check(*args: Any, **kwargs: Any) -> Any:
        result = await check(*args, **kwargs)
        OTP_CHECKS.labels(result.outcome).inc()
        return result

    @functools.wraps(refusal)
    async def counted_refusal(*args: Any, **kwargs: Any) -> Any:
        result = await refusal(*args, **kwargs)
        if result is not None:
            OTP_REFUSALS.labels(REFUSAL_REASONS.get(result.key, "other")).inc()
        return result

    counted_check.__vaxchannel_timed__ = True  # type: ignore[attr-defined]
    otp.check, otp.reserve_send = counted_check, counted_refusal


def instrument(state: Any) -> None:
    """Puts the metric hooks on what app.py wired (called once, after every package's section)."""
    worker = getattr(state, "outbox_worker", None)
    if worker is not None and not getattr(worker.on_outcome, "__vaxchannel_timed__", False):
        previous = worker.on_outcome

        def on_outcome(channel: str, outcome: str) -> None:
            count_outcome(channel, outcome)
            previous(channel, outcome)

        on_outcome.__vaxchannel_timed__ = True  # type: ignore[attr-defined]
        worker.on_outcome = on_outcome
    registry = getattr(state, "registry", None)
    if registry is not None:
        instrument_registry_backend(getattr(registry, "inner", registry))
    services = getattr(getattr(state, "conversations", None), "services", None)
    if services is not None and getattr(services, "otp", None) is not None:
        instrument_otp(services.otp)


# -- readings from the database (shared by /metrics and /healthz) -------------------------------------
async def _outbox_oldest_due_seconds(state: Any) -> float:
    now = utc_now()
    async with state.db_sessions() as session:
        oldest = await session.scalar(
            select(func.min(OutboxRow.next_attempt_at)).where(
                OutboxRow.status == "pending", OutboxRow.next_attempt_at <= now
            )
        )
    return 0.0 if oldest is None else max(0.0, (now - as_utc(oldest)).total_seconds())


async def _pending_writes(state: Any) -> int:
    async with state.db_sessions() as session:
        count = await session.scalar(
            select(func.count()).select_from(PendingWriteRow).where(PendingWriteRow.done_at.is_(None))
        )
    return int(count or 0)


async def _quietly(reading: Awaitable[Any]) -> Any:
    """A database reading for /metrics or /healthz; None when it fails or takes too long."""
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            return await reading
    except Exception:  # noqa: BLE001 - a reading that cannot be made is left out
        return None


def _breaker_state(state: Any) -> str | None:
    breaker = getattr(getattr(state, "registry", None), "breaker", None)
    return None if breaker is None else str(breaker.state)


# -- /healthz ---------------------------------------------------------------------------------------
async def _registry_reachable(state: Any) -> tuple[bool, str]:
    """Probes the registry backend (bypassing the breaker), at most every REGISTRY_PROBE_EVERY s."""
    cached = getattr(state, "health_registry_probe", None)
    if cached is not None and time.monotonic() - cached[0] < REGISTRY_PROBE_EVERY:
        return cached[1], cached[2]
    registry = state.registry
    backend = getattr(registry, "inner", registry)
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            info = await backend.info()
        reachable, detail = bool(info.reachable), "" if info.reachable else "unreachable"
        if not info.reachable:
            log.warning("health: registry unreachable: %s", info.detail)
    except TimeoutError:
        reachable, detail = False, f"no answer within {CHECK_TIMEOUT:g} s"
    except Exception as exc:  # noqa: BLE001 - any failure is "unreachable" here
        reachable, detail = False, f"unreachable ({type(exc).__name__})"
    state.health_registry_probe = (time.monotonic(), reachable, detail)
    return reachable, detail


async def _redis_problem(url: str) -> str | None:
    import redis.asyncio as redis_asyncio

    client = redis_asyncio.from_url(url, socket_timeout=CHECK_TIMEOUT, socket_connect_timeout=CHECK_TIMEOUT)
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            await client.ping()
        return None
    except Exception as exc:  # noqa: BLE001 - any failure is "unreachable"
        return f"unreachable ({type(exc).__name__})"
    finally:
        with contextlib.suppress(Exception):
            await client.aclose()


async def degraded_dependencies(state: Any) -> dict[str, str]:
    degraded: dict[str, str] = {}
    breaker = _breaker_state(state)
    if breaker is not None and breaker != "closed":
        degraded["registry"] = f"circuit {breaker}"
    elif getattr(state, "registry", None) is not None:
        reachable, detail = await _registry_reachable(state)
        if not reachable:
            degraded["registry"] = detail
    queued = await _quietly(_pending_writes(state))
    if queued:
        degraded["registry_queue"] = f"{queued} writes waiting for the registry"
    waiting = await _quietly(_outbox_oldest_due_seconds(state))
    if waiting is not None and waiting > OUTBOX_BACKLOG_LIMIT.total_seconds():
        degraded["outbox"] = f"oldest due message waiting {round(waiting / 60)} min"
    settings = getattr(state, "settings", None)
    if settings is not None and settings.redis_url:
        problem = await _redis_problem(settings.redis_url)
        if problem:
            degraded["redis"] = problem
    telegram = getattr(state, "telegram", None)
    if telegram is not None and not getattr(telegram, "ready", True):
        degraded["telegram"] = "not connected to the Bot API"
    return degraded


router = APIRouter()


@router.get(
    "/healthz",
    include_in_schema=True,
    response_model=Health,
    responses={503: {"model": Health, "description": "the database does not answer"}},
)
async def healthz(request: Request) -> JSONResponse:
    state = request.app.state
    try:
        async with asyncio.timeout(CHECK_TIMEOUT * 2):
            async with state.db_engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure means "not healthy"
        return JSONResponse(
            {"status": "unavailable", "database": f"down: {type(exc).__name__}"}, status_code=503
        )
    body: dict[str, object] = {"status": "ok"}
    degraded = await degraded_dependencies(state)
    if degraded:
        body["degraded"] = degraded
    return JSONResponse(body)


# -- /metrics ---------------------------------------------------------------------------------------
async def _refresh_gauges(state: Any) -> None:
    outbox = getattr(state, "outbox", None)
    if outbox is not None:  # metrics answer even when the database does not
        for status, count in (await _quietly(outbox.depth()) or {}).items():
            OUTBOX_DEPTH.labels(status).set(count)
        oldest = await _quietly(_outbox_oldest_due_seconds(state))
        if oldest is not None:
            OUTBOX_OLDEST.set(oldest)
    breaker = _breaker_state(state)
    if breaker is not None:
        REGISTRY_BREAKER.set(1 if breaker == "open" else 0)
        for name in BREAKER_STATES:
            REGISTRY_BREAKER_STATE.labels(name).set(1 if name == breaker else 0)
    if getattr(state, "db_sessions", None) is not None:
        queued = await _quietly(_pending_writes(state))
        if queued is not None:
            PENDING_WRITES.set(queued)


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    await _refresh_gauges(request.app.state)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
