"""How the Telegram channel plugs into the app (called from app.py's "channels" section)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from bot.application import TelegramChannel
from conversations.model import Channel
from settings import Settings

log = logging.getLogger(__name__)

Background = list[tuple[str, float, Callable[[], Awaitable[object]]]]


def _unreachable_marker(state: Any) -> Callable[[str], Awaitable[object]]:
    async def mark(address: str) -> None:
        """The engine's binding store stops addressing this chat (the user blocked the bot)."""
        engine = getattr(state, "conversations", None)
        bindings = getattr(engine, "bindings", None)
        if bindings is None or not hasattr(bindings, "mark_unreachable"):
            log.warning("no binding store to mark a telegram chat unreachable")
            return
        await bindings.mark_unreachable(Channel.TELEGRAM.value, address)

    return mark


async def start_telegram(settings: Settings, state: Any, background: Background) -> TelegramChannel | None:
    """Builds and starts `state.telegram` when TELEGRAM_BOT_TOKEN is set, adds its sender to
    `state.outbox_worker` and its background jobs, and returns it (None when Telegram is not
    configured: telegram rows then stay in the outbox)."""
    if not settings.telegram_bot_token:
        return None
    if settings.telegram_mode == "webhook":
        settings.resolved_telegram_webhook_secret  # noqa: B018 - generated now, not on the first update
    on_unreachable = _unreachable_marker(state)
    channel = TelegramChannel(
        settings, state.db_sessions, engine=lambda: state.conversations, on_unreachable=on_unreachable
    )
    worker = getattr(state, "outbox_worker", None)
    if worker is not None:  # notifications to Telegram chats (a report resolved, …)
        worker.senders[Channel.TELEGRAM.value] = channel.sender
    await channel.start()
    background.append(("telegram-updates-prune", 3600.0, channel.prune))
    if settings.telegram_mode == "polling":
        background.append(("telegram-polling", 1.0, channel.poll_once))
    return channel
