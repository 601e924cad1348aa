"""POST /telegram/webhook: Telegram posts one `Update` as JSON per request.

The route answers only in webhook mode (404 when Telegram is off or in polling mode) and only to
a caller holding the webhook secret (`X-Telegram-Bot-Api-Secret-Token`: TELEGRAM_WEBHOOK_SECRET,
or the one generated into DATA_DIR and handed to Telegram by setWebhook). A wrong or missing
secret is a 403 before anything of the body is read, so a forged update never takes the id of a
genuine one.
"""

from __future__ import annotations

import hmac
import json
import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from bot.application import RETRY, TelegramChannel
from bot.commands import WEBHOOK_PATH

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"

router = APIRouter()


def _answer(status: int, description: str, **extra: object) -> JSONResponse:
    return JSONResponse({"ok": 200 <= status < 300, "description": description, **extra}, status)


@router.post(WEBHOOK_PATH, include_in_schema=False)
async def telegram_webhook(request: Request) -> JSONResponse:
    channel: TelegramChannel | None = getattr(request.app.state, "telegram", None)
    if channel is None or channel.settings.telegram_mode != "webhook":
        return _answer(404, "no Telegram webhook here")
    secret = channel.settings.resolved_telegram_webhook_secret.encode()
    if not hmac.compare_digest(request.headers.get(SECRET_HEADER, "").encode(), secret):
        return _answer(403, "wrong secret token")
    if not channel.ready:  # Telegram redelivers on any non-2xx answer
        return _answer(503, "the bot is still connecting to Telegram")
    try:
        data = json.loads(await request.body())
    except (ValueError, RecursionError):  # RecursionError: JSON nested too deep
        return _answer(400, "the body is not JSON")
    update = channel.parse(data) if isinstance(data, dict) else None
    if update is None:
        return _answer(400, "the body is not a Telegram Update")
    outcome = await channel.feed(update)
    if outcome == RETRY:  # our answer did not reach Telegram: ask for a redelivery
        return _answer(503, "the answer could not be delivered to the Bot API; redeliver")
    return _answer(200, outcome)
