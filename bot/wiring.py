"""How the Telegram channel plugs into the app (called from app.py's "channels" section)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from bot.application import TelegramChannel
from bot.local_telegram import start_local_bot_api
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


async def start_telegram(
    settings: Settings, state: Any, background: Background, local_stand_in: bool = False
) -> TelegramChannel | None:
    """Builds and starts `state.telegram` when TELEGRAM_BOT_TOKEN is set, adds its sender to
    `state.outbox_worker` and its background jobs, and returns it (None when Telegram is not
    configured: telegram rows then stay in the outbox). Without a token and with `local_stand_in`
    (a single-process `python main.py`), the channel talks to a Bot API stand-in of its own,
    `state.telegram_stand_in` (bot/local_telegram.py), for `python main.py simulate telegram`."""
    own_stand_in = not settings.telegram_bot_token
    if own_stand_in:
        if not local_stand_in:
            return None
        state.telegram_stand_in, settings = start_local_bot_api(settings)
    if settings.telegram_mode == "webhook":
        settings.resolved_telegram_webhook_secret  # noqa: B018 - generated now, not on the first update
    on_unreachable = _unreachable_marker(state)
    channel = TelegramChannel(
        settings,
        state.db_sessions,
        engine=lambda: state.conversations,
        on_unreachable=on_unreachable,
        local_stand_in=own_stand_in,
    )
    worker = getattr(state, "outbox_worker", None)
    if worker is not None:  # notifications to Telegram chats (a report resolved, …)
        worker.senders[Channel.TELEGRAM.value] = channel.sender
    await channel.start()
    background.append(("telegram-updates-prune", 3600.0, channel.prune))
    if settings.telegram_mode == "polling":
        background.append(("telegram-polling", 1.0, channel.poll_once))
    return channel
