"""WhatsApp through Twilio: the SMS webhook (`POST /sms/twilio`, signed the same way) with
`From=whatsapp:+84…`.

The conversation is the SMS one with WhatsApp's budget (conversations.rendering: no segment
limit, diacritics kept, numbered options on one message). The webhook answers an empty TwiML
`<Response/>`; the replies go through the outbox (channel `whatsapp`, sent by
sms_gateway.sender.WhatsAppSender `From=whatsapp:<TWILIO_WHATSAPP_FROM>`), each with an
idempotency key of the inbound MessageSid, so a repeated delivery adds nothing. A certificate
goes as an image message: `MediaUrl` is the signed `/c/{token}/qr.png` link, the caption its
text. A photo the citizen sends (`MediaUrl0`, fetched from the Twilio media host only, as for
MMS) is attached to the open report. A location, a contact card or any other kind the service
cannot read is answered so, with the current question again.

A WhatsApp number proves nothing about the registered phone: it is bound to a person only after
the one-time code sent by SMS to the registered phone (the engine's login, every try counted).
Served when `settings.whatsapp_enabled`; otherwise a WhatsApp message gets a 400.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable

from fastapi import HTTPException, Request, Response
from prometheus_client import Counter
from twilio.twiml.messaging_response import MessagingResponse

from conversations.i18n import t
from conversations.model import Channel, Inbound, InboundMedia, Reply, Turn
from conversations.rendering import whatsapp_text
from outbox.store import OutboundMessage, Outbox
from registry_client.identity import mask_phone, normalize_phone
from settings import Settings
from sms_gateway.sender import CERTIFICATE_KIND, WHATSAPP_PREFIX

log = logging.getLogger(__name__)

MAX_BODY_CHARS = 4096  # WhatsApp's own limit for a text message
# Twilio's `MessageType` of an inbound WhatsApp message. Media kinds bring `MediaUrl0`; what the
# service cannot take (audio, video, a sticker) is refused by the media check with a reason.
TEXT_TYPES = frozenset({"text", "button", "interactive"})
MEDIA_TYPES = frozenset({"image", "document", "audio", "video", "sticker"})
COUNTED_TYPES = TEXT_TYPES | MEDIA_TYPES | {"location", "contacts"}  # metric labels; the rest: other
_CHOICE = re.compile(r"[0-9]{1,3}")  # a quick-reply / list answer carries the option's number

INBOUND = Counter("whatsapp_inbound_total", "WhatsApp messages received, by Twilio MessageType", ["type"])

MediaFetcher = Callable[
    [Request, dict[str, str], str], Awaitable[tuple[tuple[InboundMedia, ...], str | None]]
]


def is_whatsapp(params: dict[str, str]) -> bool:
    return params.get("From", "").strip().lower().startswith(WHATSAPP_PREFIX)


def message_type(params: dict[str, str]) -> str:
    """Twilio's MessageType; older requests lack it: media when NumMedia > 0, location when it
    carries coordinates, else text."""
    declared = params.get("MessageType", "").strip().lower()[:20]
    if declared:
        return declared
    if params.get("NumMedia", "0") not in ("", "0"):
        return "image"
    if params.get("Latitude") or params.get("Longitude"):
        return "location"
    return "text"


def qr_link(certificate_link: str) -> str:
    """The certificate page link `…/c/{token}?lang=en` → its image `…/c/{token}/qr.png?lang=en`."""
    path, sep, query = certificate_link.partition("?")
    return f"{path.rstrip('/')}/qr.png{sep}{query}"


def _choice(params: dict[str, str]) -> str | None:
    """The option number of a quick-reply button or list row the user tapped, if any."""
    for field in ("ButtonPayload", "ListId"):
        value = params.get(field, "").strip()
        if _CHOICE.fullmatch(value):
            return value
    return None


def _empty_twiml() -> Response:
    return Response(str(MessagingResponse()), media_type="application/xml")


async def handle_whatsapp(request: Request, params: dict[str, str], fetch_media: MediaFetcher) -> Response:
    """A WhatsApp message already authenticated by the caller (Twilio signature or gateway token)."""
    state = request.app.state
    settings: Settings = state.settings
    if not settings.whatsapp_enabled:
        raise HTTPException(400, "WhatsApp is not enabled on this service (TWILIO_WHATSAPP_FROM unset)")
    sender = normalize_phone(params.get("From", "").strip()[len(WHATSAPP_PREFIX) :])
    sid = params.get("MessageSid") or params.get("SmsSid") or ""
    if sender is None or not sid:
        raise HTTPException(400, "From=whatsapp:<E.164> and MessageSid are required")
    kind = message_type(params)
    INBOUND.labels(kind if kind in COUNTED_TYPES else "other").inc()
    dedup_key = f"twilio:{sid[:120]}"
    files: tuple[InboundMedia, ...] = ()
    rejected = None
    has_media = params.get("NumMedia", "0") not in ("", "0")
    if has_media and kind in MEDIA_TYPES and not await state.conversations.seen(dedup_key):
        files, rejected = await fetch_media(request, params, sid)
    elif kind in MEDIA_TYPES and not has_media:
        rejected = "download failed"
    unreadable = kind not in TEXT_TYPES and kind not in MEDIA_TYPES
    inbound = Inbound(
        channel=Channel.WHATSAPP,
        address=sender,
        text="" if unreadable else params.get("Body", "")[:MAX_BODY_CHARS],
        choice=_choice(params),
        dedup_key=dedup_key,
        media=files,
        rejected_media=rejected,
        user_name=params.get("ProfileName", "")[:80] or None,
    )
    try:
        turn = await state.conversations.handle(inbound)
    except Exception:
        log.exception("WhatsApp message from %s not handled", mask_phone(sender))
        turn = Turn(replies=[Reply(t("vi", "common.error", hotline=settings.hotline_number))])
    if unreadable:
        note = t(turn.language, "whatsapp.unsupported", hotline=settings.hotline_number)
        turn.replies.insert(0, Reply(note))
    await queue_replies(state.outbox, sender, sid, turn)
    return _empty_twiml()


def reply_messages(address: str, sid: str, turn: Turn) -> list[OutboundMessage]:
    """The turn's replies as outbox messages to the WhatsApp user (keys from the MessageSid)."""
    messages = []
    for i, reply in enumerate(turn.replies):
        text = whatsapp_text(reply)
        certificate = reply.certificate
        messages.append(
            OutboundMessage(
                channel=Channel.WHATSAPP.value,
                address=address,
                kind=CERTIFICATE_KIND if certificate is not None else "reply",
                text=text,
                params={"url": qr_link(certificate.link)} if certificate is not None else None,
                language=turn.language,
                idempotency_key=f"wa:{sid[:100]}:{i}",
            )
        )
    return messages


async def queue_replies(outbox: Outbox, address: str, sid: str, turn: Turn) -> None:
    for message in reply_messages(address, sid, turn):
        await outbox.put(message)
