"""How updates reach the bot: webhook registration (https PUBLIC_BASE_URL), long polling for a
developer without a public URL, and a service that starts while Telegram is unreachable."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import httpx
from fastapi.testclient import TestClient

from app import create_app
from conversations.i18n import t
from settings import Settings
from tests.bot.conftest import SECRET, bot_settings, payload, running_service
from tests.fakes.telegram_api import TelegramApiStandIn


async def test_https_base_registers_the_webhook_with_the_secret(
    sqlite_url: str, tmp_path: Path, telegram_api: TelegramApiStandIn
) -> None:
    settings = bot_settings(sqlite_url, tmp_path, telegram_api, public_base_url="https://vax.example.vn/")
    async for service in running_service(settings, telegram_api):
        (call,) = service.api.calls_of("setWebhook")
        assert call.params["url"] == "https://vax.example.vn/telegram/webhook"
        assert call.params["secret_token"] == SECRET
        assert set(call.params["allowed_updates"]) >= {"message", "callback_query"}
        assert service.app.state.telegram.delivery == "webhook https://vax.example.vn/telegram/webhook"


async def test_polling_mode_fetches_updates_without_a_public_url(
    sqlite_url: str, tmp_path: Path, telegram_api: TelegramApiStandIn
) -> None:
    settings = bot_settings(sqlite_url, tmp_path, telegram_api, telegram_mode="polling")
    async for service in running_service(settings, telegram_api):
        assert service.api.calls_of("deleteWebhook") and not service.api.calls_of("setWebhook")
        channel = service.app.state.telegram
        telegram_api.push_update(payload("command_start"))
        help_entity = [{"offset": 0, "length": 5, "type": "bot_command"}]
        telegram_api.push_update(
            payload("command_start", update_id=824513099, text="/help", entities=help_entity)
        )
        assert await channel.poll_once() == 2
        telegram_api.push_update(payload("command_start", update_id=824513100))
        assert await channel.poll_once() == 1  # the offset confirmed the first two: only the new one
        assert int(telegram_api.calls_of("getUpdates")[-1].params["offset"]) == 824513100
        texts = [c.params["text"] for c in telegram_api.calls_of("sendMessage")]
        assert texts[0] == t("vi", "welcome")
        assert "/status" in texts[2] and texts[3] == texts[0]  # welcome, menu, help, welcome, menu
        assert len(texts) == 5


async def test_polling_runs_as_a_background_task_with_workers(
    sqlite_url: str, tmp_path: Path, telegram_api: TelegramApiStandIn
) -> None:
    settings = bot_settings(sqlite_url, tmp_path, telegram_api, telegram_mode="polling", run_workers=True)
    async for _service in running_service(settings, telegram_api):
        telegram_api.push_update(payload("command_start"))
        await asyncio.to_thread(telegram_api.wait_for, "sendMessage", 2, 10)
        assert telegram_api.calls_of("sendMessage")[0].params["text"] == t("vi", "welcome")


def test_without_a_token_the_webhook_is_404(sqlite_url: str, tmp_path: Path) -> None:
    app = create_app(Settings(database_url=sqlite_url, data_dir=tmp_path, run_workers=False))
    with TestClient(app) as client:
        assert app.state.telegram is None
        response = client.post("/telegram/webhook", json=payload("text_message"))
        assert response.status_code == 404


async def test_service_starts_while_telegram_is_unreachable_and_says_503(
    sqlite_url: str, tmp_path: Path
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens there
    settings = Settings(
        database_url=sqlite_url,
        data_dir=tmp_path,
        run_workers=False,
        telegram_bot_token="1:x",
        telegram_api_base=dead,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            ussd = {"sessionId": "s1", "serviceCode": "*123#", "phoneNumber": "+84901234567", "text": ""}
            gateway = {"X-Gateway-Token": settings.resolved_gateway_token}
            answer = await client.post("/ussd", data=ussd, headers=gateway)
            assert answer.text.startswith("CON ")  # USSD keeps working
            secret = {"X-Telegram-Bot-Api-Secret-Token": settings.resolved_telegram_webhook_secret}
            response = await client.post("/telegram/webhook", json=payload("text_message"), headers=secret)
            assert response.status_code == 503  # Telegram will redeliver it
        assert app.state.telegram.ready is False
