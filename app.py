"""Composition root: settings → database → registry → certificates → engine → channels → FastAPI.

Each package's router reads what it needs from `request.app.state` (names below). Background
loops (outbox sender, registry replay, escalation) are started here and stopped on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from db.base import make_async_engine, make_sessionmaker
from outbox.store import Outbox
from registry_client.factory import build_registry
from settings import Settings
from web import observability

log = logging.getLogger("vaxchannel")

Loop = Callable[[], Awaitable[None]]


async def _every(interval: float, name: str, tick: Callable[[], Awaitable[object]]) -> None:
    while True:
        try:
            await tick()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("background job %s failed; retrying in %ss", name, interval)
        await asyncio.sleep(interval)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = app.state
        state.settings = settings
        state.db_engine = make_async_engine(settings.database_url)
        state.db_sessions = make_sessionmaker(state.db_engine)
        state.registry = build_registry(settings, state.db_engine)
        state.outbox = Outbox(state.db_sessions)
        state.background = background = [
            ("registry-replay", 10.0, state.registry.replay_pending),
        ]
        # -- certificates (certificates/): state.certificates ------------------------------
        # -- conversations (conversations/): state.conversations ---------------------------
        # -- channels (sms_gateway/, bot/): state.sms, state.telegram ----------------------
        # -- console (web/console/): state.console -----------------------------------------

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
            await state.registry.close()
            await state.db_engine.dispose()

    app = FastAPI(title="VaxChannel", version="0.1.0", lifespan=lifespan)
    app.add_middleware(observability.MetricsMiddleware)
    app.include_router(observability.router)
    return app


def app_from_environment() -> FastAPI:
    """Factory for `uvicorn --factory app:app_from_environment` (several workers)."""
    from web.structured_logs import configure_logging

    configure_logging()
    return create_app(Settings())
