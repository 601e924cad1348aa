"""Telegram without TELEGRAM_BOT_TOKEN: the single-process service runs a Bot API stand-in of its own
(bot/local_telegram.py) that answers only the token generated into DATA_DIR; the simulator's view
of it (LocalBotApiWatch) shows what the bot sent to its own chat. A real token disables it."""

from __future__ import annotations

import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app import create_app
from bot.local_bot_api import Call
from bot.local_telegram import ADDRESS_FILE, TOKEN_FILE, LocalBotApiWatch
from bot.simulated_updates import SimulatedUser
from registry_client.embedded.demo import load_demo
from registry_client.embedded.registry import EmbeddedRegistry
from settings import Settings
from tests.bot.conftest import TOKEN, Service
from tests.fakes.telegram_api import TelegramApiStandIn

AN_PHONE = "+84901234567"


def _settings(db_url: str, data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": db_url,
        "data_dir": data_dir,
        "run_workers": False,
        "secret_key": "local-telegram-test",
    }
    return Settings(**(values | overrides))


@pytest.fixture
async def quick_start(sqlite_url: str, tmp_path: Path) -> AsyncIterator[Service]:
    """The app as `python main.py` builds it: no Telegram token, one process."""
    settings = _settings(sqlite_url, tmp_path / "var")
    app = create_app(settings, local_telegram=True)
    async with app.router.lifespan_context(app):
        await load_demo(EmbeddedRegistry(app.state.db_engine), ordinary=0)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield Service(app, client, app.state.telegram_stand_in, settings)


def _wait_for(calls: list[Call], count: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while len(calls) < count and time.monotonic() < deadline:
        time.sleep(0.05)


async def test_every_route_of_the_stand_in_demands_the_generated_token(quick_start: Service) -> None:
    data_dir = Path(quick_start.settings.data_dir)
    token = (data_dir / TOKEN_FILE).read_text().strip()
    base = (data_dir / ADDRESS_FILE).read_text().strip()
    assert base == quick_start.api.base_url and base.startswith("http://127.0.0.1:")
    for name in (TOKEN_FILE, ADDRESS_FILE):
        assert stat.S_IMODE((data_dir / name).stat().st_mode) == 0o600
    assert quick_start.app.state.telegram.ready
    async with httpx.AsyncClient(base_url=base) as client:
        for wrong in ("", "x", TOKEN, token + "x", token.split(":")[0] + ":guess"):
            for method, path in (
                ("GET", f"/bot{wrong}/getMe"),
                ("POST", f"/bot{wrong}/sendMessage"),
                ("GET", f"/file/bot{wrong}/photos/file_0.jpg"),
                ("GET", f"/simulator/bot{wrong}/calls"),
                ("POST", f"/simulator/bot{wrong}/files"),
            ):
                answer = await client.request(method, path, json={"chat_id": 1, "text": "x"})
                assert answer.status_code in (401, 404), (method, path, answer.status_code)
                if answer.status_code == 404:  # an empty token matches no route at all
                    assert wrong == ""
        sent_by_strangers = [c for c in quick_start.api.calls_of("sendMessage") if c.params.get("text") == "x"]
        assert sent_by_strangers == []
        assert (await client.get(f"/bot{token}/getMe")).json()["result"]["username"] == "vaxchannel_bot"


async def test_the_webhook_still_demands_its_secret(quick_start: Service) -> None:
    user = SimulatedUser(AN_PHONE)
    assert (await quick_start.post(user.text("/start"), secret=None)).status_code == 403
    assert (await quick_start.post(user.text("/start"), secret="guess")).status_code == 403
    assert quick_start.api.calls_of("sendMessage") == []
    secret = quick_start.settings.resolved_telegram_webhook_secret
    assert (await quick_start.post(user.text("/start"), secret=secret)).status_code == 200
    assert quick_start.api.calls_of("sendMessage")


async def test_the_simulators_view_shows_its_own_chat_only(quick_start: Service) -> None:
    secret = quick_start.settings.resolved_telegram_webhook_secret
    me, other = SimulatedUser(AN_PHONE), SimulatedUser("+84912345678")
    await quick_start.post(me.text("/start"), secret=secret)  # before attaching: not shown
    watch = LocalBotApiWatch.attach(quick_start.settings, me.user_id)
    assert watch is not None
    seen: list[Call] = []
    watch.listeners.append(seen.append)
    watch.start()
    try:
        await quick_start.post(other.text("/help"), secret=secret)
        await quick_start.post(me.text("/status"), secret=secret)
        _wait_for(seen, 1)
        time.sleep(0.5)
        assert seen and {str(c.params["chat_id"]) for c in seen} == {str(me.user_id)}
        assert "CCCD" in seen[0].params["text"]  # the login asks for the ID (or the shared number)
        file_id, _ = watch.add_file(b"\xff\xd8\xff" + b"0" * 64)
        assert quick_start.api.files[file_id].data.startswith(b"\xff\xd8\xff")
    finally:
        watch.stop()


async def test_another_data_dir_finds_no_stand_in(quick_start: Service, tmp_path: Path) -> None:
    elsewhere = _settings(quick_start.settings.database_url, tmp_path / "other")
    assert LocalBotApiWatch.attach(elsewhere, 1) is None


async def test_a_real_token_disables_the_stand_in(
    sqlite_url: str, tmp_path: Path, telegram_api: TelegramApiStandIn
) -> None:
    settings = _settings(
        sqlite_url, tmp_path / "var", telegram_bot_token=TOKEN, telegram_api_base=telegram_api.base_url
    )
    app = create_app(settings, local_telegram=True)
    async with app.router.lifespan_context(app):
        assert getattr(app.state, "telegram_stand_in", None) is None
        assert app.state.telegram.settings.telegram_api_base == telegram_api.base_url
        assert not (tmp_path / "var" / ADDRESS_FILE).exists()
        assert telegram_api.calls_of("getMe")


async def test_several_workers_or_tests_get_no_stand_in(sqlite_url: str, tmp_path: Path) -> None:
    app = create_app(_settings(sqlite_url, tmp_path / "var"))  # local_telegram=False
    async with app.router.lifespan_context(app):
        assert app.state.telegram is None
        assert not (tmp_path / "var" / ADDRESS_FILE).exists()
