"""Twilio SMS webhooks (docs/http-api.md): `POST /sms/twilio` (inbound) and `/sms/twilio/status`.
A message `From=whatsapp:+…` is WhatsApp's (sms_gateway/whatsapp.py), signed and checked alike.

With TWILIO_AUTH_TOKEN set, every request must carry a valid `X-Twilio-Signature` computed over
PUBLIC_BASE_URL + path; with it unset, the gateway token (sms_gateway.gateway_token). 403
otherwise. A repeated MessageSid gets the stored answer and is not processed twice. Bodies are
bounded, must be UTF-8, and a missing sender is a 400 — never a 500.
"""

from __future__ import annotations

import logging

import httpx
from fastapi import APIRouter, HTTPException, Request, Response
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from conversations.i18n import t
from conversations.model import Channel, Inbound, InboundMedia
from conversations.rendering import render_sms
from conversations.text import strip_diacritics
from registry_client.identity import mask_phone, normalize_phone
from settings import Settings
from sms_gateway import media
from sms_gateway.forms import parse_form, read_body
from sms_gateway.gateway_token import require_gateway_token
from sms_gateway.whatsapp import handle_whatsapp, is_whatsapp

log = logging.getLogger(__name__)
router = APIRouter(tags=["sms"])

MAX_FORM_BYTES = 32 * 1024
MAX_BODY_CHARS = 1600  # Twilio's own limit for a (concatenated) message
MAX_MEDIA = 5
KNOWN_STATUSES = frozenset(
    {
        "accepted",
        "scheduled",
        "queued",
        "sending",
        "sent",
        "delivered",
        "undelivered",
        "failed",
        "canceled",
        "read",
        "receiving",
        "received",
        "partially_delivered",
    }
)


def signed_url(settings: Settings, request: Request) -> str:
    url = settings.public_base_url.rstrip("/") + request.url.path
    return f"{url}?{request.url.query}" if request.url.query else url


async def read_twilio_form(request: Request) -> dict[str, str]:
    settings: Settings = request.app.state.settings
    if not settings.twilio_auth_token:
        require_gateway_token(settings, request)  # before the body is read
    params = parse_form(await read_body(request, MAX_FORM_BYTES))
    if settings.twilio_auth_token:
        signature = request.headers.get("X-Twilio-Signature", "")
        validator = RequestValidator(settings.twilio_auth_token)
        if not signature or not validator.validate(signed_url(settings, request), params, signature):
            raise HTTPException(403, "invalid Twilio signature")
    return params


def twiml(text: str | None) -> Response:
    response = MessagingResponse()
    if text:
        response.message(text)
    return Response(str(response), media_type="application/xml")


async def _media(
    request: Request, params: dict[str, str], sid: str
) -> tuple[tuple[InboundMedia, ...], str | None]:
    settings: Settings = request.app.state.settings
    count = int(params.get("NumMedia", "0")) if params.get("NumMedia", "0").isdigit() else 0
    auth = (
        (settings.twilio_account_sid, settings.twilio_auth_token)
        if settings.twilio_account_sid and settings.twilio_auth_token
        else None
    )
    stored: list[InboundMedia] = []
    rejected: str | None = None
    for i in range(min(count, MAX_MEDIA)):
        url = params.get(f"MediaUrl{i}")
        if not url:
            continue
        try:
            content, declared = await media.download(url, auth, api_base=settings.twilio_api_base)
            stored.append(
                media.store(
                    settings.data_dir,
                    content,
                    params.get(f"MediaContentType{i}") or declared,
                    f"mms-{sid[:40]}",
                )
            )
        except media.MediaRejected as exc:
            rejected = str(exc)
        except httpx.HTTPError as exc:
            log.warning("MMS media %s of %s not downloaded: %s", i, sid, type(exc).__name__)
            rejected = "download failed"
    return tuple(stored), rejected


@router.post("/sms/twilio")
async def inbound_sms(request: Request) -> Response:
    state = request.app.state
    settings: Settings = state.settings
    params = await read_twilio_form(request)
    if is_whatsapp(params):  # From=whatsapp:+84…: the same conversation with WhatsApp's budget
        return await handle_whatsapp(request, params, _media)
    sender = normalize_phone(params.get("From", ""))
    sid = params.get("MessageSid") or params.get("SmsSid") or ""
    if sender is None or not sid:
        raise HTTPException(400, "From and MessageSid are required")
    dedup_key = f"twilio:{sid[:120]}"
    files: tuple[InboundMedia, ...] = ()
    rejected = None
    if params.get("NumMedia", "0") not in ("", "0") and not await state.conversations.seen(dedup_key):
        files, rejected = await _media(request, params, sid)
    inbound = Inbound(
        channel=Channel.SMS,
        address=sender,
        text=params.get("Body", "")[:MAX_BODY_CHARS],
        dedup_key=dedup_key,
        media=files,
        rejected_media=rejected,
    )
    try:
        turn = await state.conversations.handle(inbound)
    except Exception:
        log.exception("SMS from %s not handled", mask_phone(sender))
        text = t("vi", "common.error", hotline=settings.hotline_number)
        return twiml(strip_diacritics(text) if settings.sms_strip_diacritics else text)
    return twiml(render_sms(turn, strip=settings.sms_strip_diacritics))


@router.post("/sms/twilio/status")
async def delivery_status(request: Request) -> Response:
    params = await read_twilio_form(request)
    sid = params.get("MessageSid") or params.get("SmsSid")
    status = (params.get("MessageStatus") or params.get("SmsStatus") or "").strip().lower()
    if not sid or not status:
        raise HTTPException(400, "MessageSid and MessageStatus are required")
    if status not in KNOWN_STATUSES:
        log.warning("unknown Twilio message status %r for %s", status[:40], sid[:64])
    error_code = (params.get("ErrorCode") or "").strip()[:20] or None
    found = await request.app.state.outbox.record_provider_status(sid[:64], status[:32], error_code)
    if not found:
        log.info("status %s for unknown message %s", status[:32], sid[:64])
    return Response(status_code=204)
