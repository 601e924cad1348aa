"""The outbox sender for channel "telegram": notifications to a chat (a report resolved, …).

Bot API errors become `SendError`s the outbox worker understands: 429 → retry after Telegram's
`retry_after`; 5xx and timeouts → retry with backoff; 403 (the user blocked the bot, or deleted
the account) and "chat not found" → the chat is unreachable: not retried, and the engine is told
so it stops addressing that chat.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

from telegram import Bot, InputFile
from telegram.error import BadRequest, ChatMigrated, Forbidden, InvalidToken, RetryAfter, TelegramError

from bot.render import split_text
from outbox.tables import OutboxRow
from outbox.worker import SendError, SendResult

log = logging.getLogger(__name__)

Unreachable = Callable[[str], Awaitable[object]]  # tells the engine a chat can no longer be reached
UNREACHABLE_HINTS = ("chat not found", "user is deactivated", "bot was kicked", "peer_id_invalid")


def _seconds(value: int | float | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


class TelegramSender:
    def __init__(self, bot: Bot, on_unreachable: Unreachable | None = None) -> None:
        self.bot, self.on_unreachable = bot, on_unreachable

    async def send(self, row: OutboxRow, text: str) -> SendResult:
        try:
            message_id = await self._deliver(row, text)
        except RetryAfter as exc:
            retry_after = _seconds(exc.retry_after)
            raise SendError(str(exc), retryable=True, code="429", retry_after=retry_after) from exc
        except Forbidden as exc:
            await self._unreachable(row)
            raise SendError(str(exc), retryable=False, code="403", unreachable=True) from exc
        except BadRequest as exc:
            if any(hint in str(exc).lower() for hint in UNREACHABLE_HINTS):
                await self._unreachable(row)
                raise SendError(str(exc), retryable=False, code="400", unreachable=True) from exc
            raise SendError(str(exc), retryable=False, code="400") from exc
        except ChatMigrated as exc:
            raise SendError(str(exc), retryable=False, code="migrated") from exc
        except InvalidToken as exc:  # a configuration error an operator can fix: keep the message
            raise SendError(str(exc), retryable=True, code="token") from exc
        except TelegramError as exc:  # NetworkError, TimedOut, 5xx
            raise SendError(str(exc), retryable=True, code="network") from exc
        return SendResult(provider_id=str(message_id), provider_status="sent")

    async def _deliver(self, row: OutboxRow, text: str) -> int:
        chat_id = int(row.address)
        media = Path(row.media_path) if row.media_path else None
        if media is not None and media.suffix.lower() in (".png", ".jpg", ".jpeg") and media.is_file():
            fits = split_text(text, 1024) == [text.strip()]
            photo = InputFile(media.read_bytes(), filename=media.name)
            message = await self.bot.send_photo(chat_id, photo, caption=text if fits else None)
            if fits or not text.strip():
                return message.message_id
        message_id = 0
        for piece in split_text(text) or ["…"]:
            message_id = (await self.bot.send_message(chat_id, piece)).message_id
        return message_id

    async def _unreachable(self, row: OutboxRow) -> None:
        log.info("telegram chat of outbox row %s is unreachable; not retrying", row.id)
        if self.on_unreachable is not None:
            try:
                await self.on_unreachable(row.address)
            except Exception:  # the send outcome is recorded either way
                log.exception("could not mark the telegram chat of outbox row %s unreachable", row.id)
