"""`python main.py simulate telegram`: run for real (it starts the service itself, with Telegram
pointed at its own Bot API stand-in), fed from standard input."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

from telegram import Bot, Update

from bot.simulated_updates import SimulatedUser
from db.base import make_async_engine
from registry_client.embedded.demo import load_demo
from registry_client.embedded.registry import EmbeddedRegistry

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_simulated_updates_are_valid_bot_api_updates() -> None:
    user = SimulatedUser("+84901234567")
    bot = Bot("1:x")
    command = Update.de_json(user.text("/check PA-7K3D-95"), bot)
    assert command.message.text == "/check PA-7K3D-95" and command.message.entities[0].type == "bot_command"
    contact = Update.de_json(user.contact(), bot).message.contact
    assert contact.user_id == user.user_id and contact.phone_number == "84901234567"
    foreign = Update.de_json(user.contact("+84912345678"), bot).message.contact
    assert foreign.user_id != user.user_id
    pressed = Update.de_json(
        user.press({"message_id": 9, "chat": user.chat, "date": 0, "text": "x"}, "1"), bot
    )
    assert pressed.callback_query.data == "1" and pressed.callback_query.message.message_id == 9
    ids = [user.text("a")["update_id"] for _ in range(3)]
    assert ids == sorted(set(ids))


async def _demo_database(url: str) -> None:
    engine = make_async_engine(url)
    try:
        await load_demo(EmbeddedRegistry(engine), ordinary=0)
    finally:
        await engine.dispose()


def test_simulator_starts_the_service_and_shows_the_bots_answers_and_the_sms(
    sqlite_url: str, tmp_path: Path
) -> None:
    asyncio.run(_demo_database(sqlite_url))  # `serve` then skips loading the big demo set
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": sqlite_url,
        "DATA_DIR": str(tmp_path / "var"),
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "TELEGRAM_WEBHOOK_SECRET": "sim-secret",
        "SECRET_KEY": "sim",
    }
    for name in ("TELEGRAM_BOT_TOKEN", "TELEGRAM_API_BASE", "TWILIO_ACCOUNT_SID"):
        env.pop(name, None)
    typed = "/start\n!contact +84912345678\n!contact\n!sticker\n/help\n/status\n!quit\n"
    done = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), "simulate", "telegram", "--phone", "0901234567"],
        input=typed,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=ROOT,
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "Starting the service at" in out and "you are a Telegram user whose phone is +84901234567" in out
    assert "🤖 Chào bạn!" in out and "[!1]" in out  # the welcome and the menu buttons
    assert "chỉ nhận số điện thoại của chính bạn" in out and "(type !contact)" in out
    assert re.search(r"✉  SMS to \+84901234567: VaxChannel: ma xac thuc \d{6}", out), out
    assert "Tôi chỉ đọc được tin nhắn chữ" in out and "/logout" in out
    log = (tmp_path / "var" / "simulator" / "telegram-service.log").read_text()
    assert "Telegram bot @vaxchannel_bot ready" in log
    with socket.socket() as s:  # the service the simulator started is gone
        assert s.connect_ex(("127.0.0.1", port)) != 0
