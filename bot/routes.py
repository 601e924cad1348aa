"""POST /telegram/webhook (INTERFACES §3): Telegram posts one `Update` as JSON per request."""

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
    if channel is None:
        return _answer(404, "the Telegram channel is not configured")
    secret = channel.settings.telegram_webhook_secret
    if secret and not hmac.compare_digest(request.headers.get(SECRET_HEADER, "").encode(), secret.encode()):
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
