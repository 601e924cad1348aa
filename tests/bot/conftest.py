"""Fixtures for the Telegram adapter: the Bot API stand-in, recorded Update payloads, the service
(the real FastAPI app and lifespan) with Telegram pointed at the stand-in."""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app import create_app
from registry_client.embedded.demo import load_demo
from registry_client.embedded.registry import EmbeddedRegistry
from settings import Settings
from tests.fakes.telegram_api import TelegramApiStandIn

PAYLOADS = Path(__file__).parent / "payloads"
TOKEN = "7000000001:AAHk3dVaxChannelTestTokenQ9xYz"
SECRET = "s3cr3t-webhook_token"
USER_ID = 548213307  # the sender of the recorded payloads


def payload(name: str, **changes: Any) -> dict[str, Any]:
    """A recorded Update; `changes` replace top-level keys of its message (or the update itself)."""
    data: dict[str, Any] = json.loads((PAYLOADS / f"{name}.json").read_text(encoding="utf-8"))
    data = copy.deepcopy(data)
    if "update_id" in changes:
        data["update_id"] = changes.pop("update_id")
    if changes:
        data["message"].update(changes)
    return data


@pytest.fixture
def telegram_api() -> Iterator[TelegramApiStandIn]:
    with TelegramApiStandIn() as api:
        yield api


def bot_settings(db_url: str, data_dir: Path, api: TelegramApiStandIn, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": db_url,
        "data_dir": data_dir,
        "telegram_bot_token": TOKEN,
        "telegram_api_base": api.base_url,
        "telegram_webhook_secret": SECRET,
        "run_workers": False,
        "secret_key": "test-secret-key",
    }
    values.update(overrides)
    return Settings(**values)


@dataclass
class Service:
    app: FastAPI
    client: httpx.AsyncClient
    api: TelegramApiStandIn
    settings: Settings

    async def post(self, update: dict[str, Any] | bytes, secret: str | None = SECRET) -> httpx.Response:
        headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret is not None else {}
        if isinstance(update, bytes):
            headers["Content-Type"] = "application/json"
            return await self.client.post("/telegram/webhook", content=update, headers=headers)
        return await self.client.post("/telegram/webhook", json=update, headers=headers)


async def running_service(settings: Settings, api: TelegramApiStandIn) -> AsyncIterator[Service]:
    """The real app (lifespan included) with the demo identities in its embedded registry."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        await load_demo(EmbeddedRegistry(app.state.db_engine), ordinary=0)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield Service(app, client, api, settings)


@pytest.fixture
async def service(
    sqlite_url: str, tmp_path: Path, telegram_api: TelegramApiStandIn
) -> AsyncIterator[Service]:
    async for running in running_service(bot_settings(sqlite_url, tmp_path, telegram_api), telegram_api):
        yield running
