"""Composition root: settings → database → registry → certificates → engine → channels → FastAPI.

Each package's router reads what it needs from `request.app.state` (names below). Background
loops (outbox sender, registry replay, escalation) are started here and stopped on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from bot import routes as telegram_routes
from bot.wiring import start_telegram
from certificates.service import build_certificate_service
from conversations.wiring import wire_conversations
from db.base import make_async_engine, make_sessionmaker
from db.private_files import protect_data_dir
from outbox.sealing import OutboxSeal
from outbox.store import Outbox
from registry_client.factory import build_registry
from settings import GATEWAY_TOKEN_FILE, TELEGRAM_SECRET_FILE, Settings
from sms_gateway import routes as sms_routes
from sms_gateway.wiring import wire_sms
from web import certificate_pages, observability, verify_code
from web.console.wiring import install_console, setup_console
from web.request_errors import MAX_REQUEST_BYTES, install_request_error_handlers
from web.security_headers import SecurityHeadersMiddleware
from web.webhook_fast_path import WEBHOOK_PATHS, install_webhook_fast_path

log = logging.getLogger("vaxchannel")


async def _every(interval: float, name: str, tick: Callable[[], Awaitable[object]]) -> None:
    while True:
        try:
            await tick()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("background job %s failed; retrying in %ss", name, interval)
        await asyncio.sleep(interval)


def channel_auth_lines(settings: Settings, local_telegram: bool = False) -> list[str]:
    """How each channel knows its callers, one line each, for the start banner (never a secret).
    `local_telegram`: without a token, Telegram runs against the service's own Bot API stand-in."""
    data_dir = settings.data_dir
    ussd = (
        "gateway token from USSD_GATEWAY_TOKEN"
        if settings.ussd_gateway_token
        else f"gateway token from DATA_DIR/{GATEWAY_TOKEN_FILE} ({data_dir / GATEWAY_TOKEN_FILE})"
    )
    sms = (
        "Twilio signature (TWILIO_AUTH_TOKEN)"
        if settings.twilio_auth_token
        else "gateway token, as for USSD (TWILIO_AUTH_TOKEN unset)"
    )
    if not settings.telegram_bot_token and local_telegram:
        telegram = (
            f"local Bot API stand-in (TELEGRAM_BOT_TOKEN unset): webhook with secret from "
            f"DATA_DIR/{TELEGRAM_SECRET_FILE}; the stand-in demands DATA_DIR/telegram_local_bot_token"
        )
    elif not settings.telegram_bot_token:
        telegram = "disabled (TELEGRAM_BOT_TOKEN unset)"
    elif settings.telegram_mode == "polling":
        telegram = "polling (no webhook route)"
    elif settings.telegram_webhook_secret:
        telegram = "webhook with secret from TELEGRAM_WEBHOOK_SECRET"
    else:
        telegram = (
            f"webhook with secret from DATA_DIR/{TELEGRAM_SECRET_FILE} ({data_dir / TELEGRAM_SECRET_FILE})"
        )
    if not settings.whatsapp_enabled:
        whatsapp = "disabled (TWILIO_WHATSAPP_FROM unset)"
    elif settings.twilio_whatsapp_from:
        whatsapp = f"as SMS, on /sms/twilio; replies from whatsapp:{settings.twilio_whatsapp_from}"
    else:
        whatsapp = "as SMS (no Twilio: the local simulator only, replies kept in the outbox)"
    metrics = "Bearer METRICS_TOKEN" if settings.metrics_token else "open (METRICS_TOKEN unset)"
    return [
        f"  USSD          : {ussd}",
        f"  SMS           : {sms}",
        f"  WhatsApp      : {whatsapp}",
        f"  Telegram      : {telegram}",
        f"  metrics, docs : {metrics}",
    ]


def create_app(settings: Settings | None = None, local_telegram: bool = False) -> FastAPI:
    """`local_telegram`: without TELEGRAM_BOT_TOKEN, run Telegram against a Bot API stand-in of
    this process (`python main.py` with one worker; see bot/local_telegram.py)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = app.state
        state.settings = settings
        protect_data_dir(settings.data_dir)  # umask 077 and DATA_DIR 0700: nothing here is world-readable
        state.db_engine = make_async_engine(settings.database_url)
        state.db_sessions = make_sessionmaker(state.db_engine)
        state.registry = build_registry(settings, state.db_engine)
        state.outbox = Outbox(state.db_sessions, seal=OutboxSeal(settings.secret_keys.outbox_seal))
        state.background = background = [
            ("registry-replay", 10.0, state.registry.replay_pending),
            ("outbox-scrub", 3600.0, state.outbox.scrub),  # seals nobody will open any more
        ]
        # -- certificates (certificates/): state.certificates ------------------------------
        state.certificates = build_certificate_service(settings, state.db_sessions)
        background.append(("certificate-code-attempts-cleanup", 3600.0, state.certificates.codes.cleanup))
        # -- conversations (conversations/): state.conversations ---------------------------
        wire_conversations(settings, state, background)  # state.conversations, state.case_notifier
        # -- channels (sms_gateway/, bot/): state.sms, state.telegram ----------------------
        wire_sms(settings, state, background)  # state.outbox_worker (senders["sms"]), state.sms_sender
        state.telegram = await start_telegram(settings, state, background, local_stand_in=local_telegram)
        for line in channel_auth_lines(settings, local_telegram):  # how each channel knows its callers (no secret)
            log.info("callers authenticated by: %s", " ".join(line.split()))
        # -- console (web/console/): state.console -----------------------------------------
        setup_console(state)
        # -- observability (web/observability.py): metric hooks on the wired objects -------
        observability.instrument(state)

        # Everything built so far lives as long as the process: move it out of the collector's
        # sight. Full collections re-scanned it and paused every request for ~100 ms under load.
        gc.collect()
        gc.freeze()

        tasks: list[asyncio.Task[None]] = []
        if settings.run_workers:
            tasks = [asyncio.create_task(_every(i, n, t), name=n) for n, i, t in background]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if getattr(state, "telegram", None) is not None:
                await state.telegram.stop()
            if getattr(state, "telegram_stand_in", None) is not None:
                state.telegram_stand_in.stop()
            if getattr(state, "conversations", None) is not None:
                await state.conversations.aclose()  # writes queued audit lines first
            await state.registry.close()
            await state.db_engine.dispose()

    app = FastAPI(
        title="VaxChannel",
        version="0.1.0",
        lifespan=lifespan,
        max_body_size=MAX_REQUEST_BYTES,
        telemetry=observability.fastapi_telemetry(os.environ),
    )
    install_request_error_handlers(app)  # malformed requests: 4xx, never 500
    app.add_middleware(observability.MetricsMiddleware, access_log=settings.access_log)
    if settings.metrics_token:  # /metrics and the API docs for the operator only
        app.add_middleware(observability.OperatorPagesGuard, token=settings.metrics_token)
    app.add_middleware(SecurityHeadersMiddleware)  # CSP, frames, nosniff, referrer on every response
    app.include_router(observability.router)
    app.include_router(verify_code.router)
    app.include_router(sms_routes.router)
    install_console(app)
    app.include_router(certificate_pages.router)
    app.include_router(telegram_routes.router)
    # the gateways' webhooks skip routing, dependencies and console middleware (same answers)
    install_webhook_fast_path(app, WEBHOOK_PATHS, access_log=settings.access_log)
    return app


def app_from_environment() -> FastAPI:
    """Factory for `uvicorn --factory app:app_from_environment` (several workers)."""
    from web.structured_logs import configure_logging

    settings = Settings()
    configure_logging(settings)
    return create_app(settings)


def one_process_app_from_environment() -> FastAPI:
    """Factory for ONE uvicorn worker process, as `python main.py` runs without `--workers`: USSD
    navigation is kept in this process's memory (conversations.hot_state.MemoryHotState). Never
    with `--workers` above 1: each worker would keep its own copy of a caller's session."""
    app = app_from_environment()
    app.state.single_process = True
    return app
