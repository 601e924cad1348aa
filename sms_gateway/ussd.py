"""USSD gateway webhook (Africa's Talking format, docs/http-api.md; menu: docs/ussd-menu.md): `POST /ussd`.

Form fields `sessionId`, `serviceCode`, `phoneNumber`, `networkCode`, `text` (every input of the
session joined by `*`). The answer is `text/plain`, `CON …` (more input) or `END …`, at most
182 characters. Every request must carry the gateway token (sms_gateway.gateway_token) as
`X-Gateway-Token` or `?token=`; without it: 403, and nothing of the request is read.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import PlainTextResponse

from conversations.i18n import t
from conversations.model import Channel, Inbound
from conversations.rendering import USSD_MAX_CHARS, render_ussd
from conversations.text import strip_diacritics
from registry_client.identity import mask_phone, normalize_phone
from settings import Settings
from sms_gateway.forms import parse_form, read_body
from sms_gateway.gateway_token import require_gateway_token

log = logging.getLogger(__name__)
router = APIRouter(tags=["ussd"])

MAX_FORM_BYTES = 64 * 1024  # a whole session's inputs joined by `*`, URL-encoded; bounded
MAX_INPUT_CHARS = 160


def answer(text: str) -> PlainTextResponse:
    if len(text) > USSD_MAX_CHARS:  # the engine paginates; this is only a last guard
        log.error("USSD answer of %d characters cut", len(text))
        text = text[:USSD_MAX_CHARS]
    return PlainTextResponse(text)


@router.post("/ussd")
async def ussd(request: Request) -> PlainTextResponse:
    settings: Settings = request.app.state.settings
    require_gateway_token(settings, request)
    form = parse_form(await read_body(request, MAX_FORM_BYTES))
    session_id = form.get("sessionId", "").strip()
    phone = normalize_phone(form.get("phoneNumber", ""))
    if not session_id or phone is None:
        raise HTTPException(400, "sessionId and a valid phoneNumber are required")
    raw = form.get("text", "")
    inputs = tuple(part.strip()[:MAX_INPUT_CHARS] for part in raw.split("*")) if raw else ()
    inbound = Inbound(
        channel=Channel.USSD,
        address=phone,
        text=inputs[-1] if inputs else "",
        session_key=session_id[:100],
        inputs=inputs,
    )
    try:
        turn = await request.app.state.conversations.handle(inbound)
    except Exception:
        log.exception("USSD session of %s not handled", mask_phone(phone))
        text = t("vi", "common.error", hotline=settings.hotline_number)
        return answer("END " + (strip_diacritics(text) if settings.sms_strip_diacritics else text))
    return answer(render_ussd(turn, strip=settings.sms_strip_diacritics))
