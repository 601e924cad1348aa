"""What the bot tells Telegram about itself at start: its command menu (Vietnamese by default,
English for English-language clients) and how updates reach it (webhook or long polling)."""

from __future__ import annotations

import logging

from telegram import Bot, BotCommand

from settings import Settings

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/telegram/webhook"
ALLOWED_UPDATES = ["message", "edited_message", "callback_query", "my_chat_member"]

COMMAND_MENU: dict[str, list[tuple[str, str]]] = {
    "vi": [
        ("start", "Bắt đầu / đăng nhập"),
        ("status", "Xem các mũi tiêm của tôi"),
        ("certificate", "Nhận chứng nhận tiêm chủng (mã QR)"),
        ("report", "Báo thiếu hoặc sai mũi tiêm"),
        ("check", "Xem tình trạng phản ánh: /check <mã>"),
        ("language", "Đổi ngôn ngữ (Tiếng Việt / English)"),
        ("help", "Hướng dẫn"),
        ("logout", "Đăng xuất"),
    ],
    "en": [
        ("start", "Start / log in"),
        ("status", "My doses"),
        ("certificate", "Get my vaccination certificate (QR)"),
        ("report", "Report a missing or wrong dose"),
        ("check", "State of a report: /check <ref>"),
        ("language", "Change language (Tiếng Việt / English)"),
        ("help", "Help"),
        ("logout", "Log out"),
    ],
}


async def register_commands(bot: Bot) -> None:
    """Vietnamese is the default menu; clients set to English get the English one."""
    await bot.set_my_commands([BotCommand(c, d) for c, d in COMMAND_MENU["vi"]])
    await bot.set_my_commands([BotCommand(c, d) for c, d in COMMAND_MENU["en"]], language_code="en")


def webhook_url(settings: Settings) -> str | None:
    """The webhook address Telegram can call, or None when PUBLIC_BASE_URL is not https."""
    base = settings.public_base_url.rstrip("/")
    return base + WEBHOOK_PATH if base.startswith("https://") else None


async def configure_delivery(bot: Bot, settings: Settings, local_stand_in: bool = False) -> str:
    """Registers the webhook (webhook mode, https base) or removes it (polling mode). Returns what
    was done, for the start-up log. The service's own stand-in (no TELEGRAM_BOT_TOKEN) needs
    neither: the simulator posts its updates to the webhook route."""
    if local_stand_in:
        return "local Bot API stand-in (updates from `main.py simulate telegram`)"
    if settings.telegram_mode == "polling":
        await bot.delete_webhook(drop_pending_updates=False)
        return "polling (getUpdates)"
    url = webhook_url(settings)
    if url is None:
        log.warning(
            "Telegram webhook not registered: PUBLIC_BASE_URL %s is not https. Use a public https URL "
            "or TELEGRAM_MODE=polling.",
            settings.public_base_url,
        )
        return "webhook not registered (PUBLIC_BASE_URL is not https)"
    await bot.set_webhook(
        url,
        secret_token=settings.resolved_telegram_webhook_secret,  # Telegram sends it with every update
        allowed_updates=ALLOWED_UPDATES,
        max_connections=40,
    )
    return f"webhook {url}"
