"""The Telegram channel: a python-telegram-bot `Application` without an Updater, fed by the webhook
route (or by our own getUpdates loop in polling mode), with one handler that hands every update
to the engine. No flow logic lives here: conversation state is the engine's alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from telegram import Bot, Update
from telegram.constants import ChatMemberStatus, ChatType
from telegram.error import NetworkError, RetryAfter, TelegramError
from telegram.ext import Application, ContextTypes, TypeHandler

from bot import texts
from bot.commands import ALLOWED_UPDATES, configure_delivery, register_commands
from bot.inbound import Notice, to_inbound, user_language
from bot.processed_updates import ProcessedUpdates
from bot.render import contact_keyboard, render_turn, send_text
from bot.sender import TelegramSender, Unreachable
from conversations.model import Channel, Inbound, Turn
from settings import Settings

log = logging.getLogger(__name__)

START_RETRY_SECONDS = 30.0
PROCESSED, DUPLICATE, RETRY = "processed", "duplicate", "retry"


class Engine(Protocol):
    async def handle(self, inbound: Inbound) -> Turn: ...

    async def language_of(self, channel: Channel, address: str) -> str | None: ...


def build_application(settings: Settings) -> Application[Any, Any, Any, Any, Any, Any]:
    assert settings.telegram_bot_token, "TELEGRAM_BOT_TOKEN is required"
    base = settings.telegram_api_base.rstrip("/")
    return (
        Application.builder()
        .token(settings.telegram_bot_token)
        .base_url(f"{base}/bot")
        .base_file_url(f"{base}/file/bot")
        .updater(None)
        .build()
    )


class TelegramChannel:
    """`app.state.telegram`: owns the PTB Application and turns updates into engine turns."""

    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        engine: Callable[[], Engine],
        on_unreachable: Unreachable | None = None,
        local_stand_in: bool = False,
    ) -> None:
        self.settings = settings
        self.local_stand_in = local_stand_in  # talks to the service's own Bot API stand-in
        self.engine = engine
        self.on_unreachable = on_unreachable
        self.uploads = Path(settings.data_dir) / "uploads"
        self.processed = ProcessedUpdates(sessions)
        self.application = build_application(settings)
        self.application.add_handler(TypeHandler(Update, self._on_update))
        self.application.add_error_handler(self._on_error)
        self.sender = TelegramSender(self.application.bot, on_unreachable)  # the outbox's "telegram" sender
        self.ready = False
        self._initialized = False
        self.delivery = "not started"
        self._offset = 0
        self._undelivered: set[int] = set()  # updates whose answer failed on the Bot API side
        self._starter: asyncio.Task[None] | None = None

    @property
    def bot(self) -> Bot:
        bot: Bot = self.application.bot
        return bot

    # -- life cycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        """Connects to the Bot API. When Telegram cannot be reached the service starts anyway and
        keeps trying in the background (SMS and USSD must not depend on Telegram)."""
        try:
            await self._connect()
        except (TelegramError, OSError) as exc:
            log.error(
                "Telegram Bot API unreachable at start (%s); retrying every %ss", exc, START_RETRY_SECONDS
            )
            self._starter = asyncio.create_task(self._keep_connecting(), name="telegram-connect")

    async def _connect(self) -> None:
        if not self._initialized:
            await self.application.initialize()
            self._initialized = True
        await register_commands(self.bot)
        self.delivery = await configure_delivery(self.bot, self.settings, self.local_stand_in)
        if not self.application.running:
            await self.application.start()
        self.ready = True
        log.info("Telegram bot @%s ready: %s", self.bot.username, self.delivery)

    async def _keep_connecting(self) -> None:
        while not self.ready:
            await asyncio.sleep(START_RETRY_SECONDS)
            try:
                await self._connect()
            except (TelegramError, OSError) as exc:
                log.warning("Telegram Bot API still unreachable: %s", exc)

    async def stop(self) -> None:
        if self._starter is not None:
            self._starter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._starter
        if self.application.running:
            await self.application.stop()
        if self._initialized:
            await self.application.shutdown()
            self._initialized = False
        self.ready = False

    # -- receiving -----------------------------------------------------------------------------
    def parse(self, data: dict[str, Any]) -> Update | None:
        """The Update, or None when the JSON is no Update."""
        if not isinstance(data.get("update_id"), int):
            return None
        try:
            return Update.de_json(data, self.bot)
        except Exception:  # PTB raises whatever the malformed structure triggers
            log.info("telegram webhook: a body that is no Update (keys %s)", sorted(data)[:5])
            return None

    async def feed(self, update: Update) -> str:
        """Processes an update once: PROCESSED, DUPLICATE (a redelivery), or RETRY when the answer
        could not reach the Bot API (the claim is released so Telegram's redelivery is handled; the
        engine then answers it from its receipt of `dedup_key` instead of processing it twice)."""
        if not await self.processed.claim(update.update_id):
            log.info("telegram update %s already processed", update.update_id)
            return DUPLICATE
        await self.application.process_update(update)
        if update.update_id in self._undelivered:
            self._undelivered.discard(update.update_id)
            await self.processed.release(update.update_id)
            return RETRY
        return PROCESSED

    async def poll_once(self) -> int:
        """One long-poll round (TELEGRAM_MODE=polling). Returns the number of updates handled."""
        if not self.ready:
            return 0
        updates = await self.bot.get_updates(
            offset=self._offset or None, timeout=25, allowed_updates=ALLOWED_UPDATES
        )
        for handled, update in enumerate(updates):
            if await self.feed(update) == RETRY:
                self._offset = update.update_id  # fetch it again next round
                return handled
            self._offset = update.update_id + 1
        return len(updates)

    async def prune(self) -> int:
        return await self.processed.prune()

    # -- handling ------------------------------------------------------------------------------
    async def _on_update(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if update.my_chat_member is not None:
            await self._member_changed(update)
            return
        event = await to_inbound(update, self.bot, self.uploads)
        if event is None:
            if update.callback_query is not None:
                await update.callback_query.answer()
            return
        if isinstance(event, Notice):
            await self._notice(event)
            return
        turn = await self.engine().handle(replace(event, dedup_key=f"telegram:{update.update_id}"))
        try:
            await render_turn(
                self.bot,
                event.address,
                turn,
                query=update.callback_query,
                clear_keyboard=event.shared_phone is not None,
            )
        except (NetworkError, RetryAfter):  # Telegram will redeliver the update: answer it then
            self._undelivered.add(update.update_id)
            raise

    async def _notice(self, notice: Notice) -> None:
        """Said by the adapter itself, in the language of the user's conversation (the one chosen
        with /language); a chat with no conversation yet gets its Telegram client's language."""
        chosen = await self.engine().language_of(Channel.TELEGRAM, str(notice.chat_id))
        language = chosen or notice.language
        markup = contact_keyboard(language) if notice.kind == "foreign_contact" else None
        await send_text(self.bot, notice.chat_id, texts.text(notice.kind, language), markup)

    async def _member_changed(self, update: Update) -> None:
        """The user blocked the bot (or unblocked it): stop sending to that chat."""
        change = update.my_chat_member
        assert change is not None
        if change.chat.type != ChatType.PRIVATE:
            return
        if change.new_chat_member.status == ChatMemberStatus.BANNED and self.on_unreachable is not None:
            await self.on_unreachable(str(change.chat.id))

    async def _on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        if isinstance(update, Update) and update.update_id in self._undelivered:
            log.warning(
                "telegram update %s: answer not delivered (%s); awaiting redelivery",
                update.update_id,
                context.error,
            )
            return
        log.error("telegram update failed: %r", context.error, exc_info=context.error)
        if not isinstance(update, Update) or update.effective_chat is None:
            return
        if update.effective_chat.type != ChatType.PRIVATE:
            return
        with contextlib.suppress(TelegramError):
            if update.callback_query is not None:
                await update.callback_query.answer()
            await self.bot.send_message(update.effective_chat.id, texts.text("error", user_language(update)))
