"""The outbox's SMS and WhatsApp senders: the official twilio SDK, pointed at TWILIO_API_BASE.

The SDK is blocking (requests); each send runs in a worker thread. Twilio's answers become the
outbox worker's vocabulary: 429, 5xx, timeouts and connection errors → `SendError(retryable=True)`;
the permanent error codes (unsubscribed 21610, invalid number 21211, not a mobile 21614, …) →
`SendError(retryable=False, code=…)`, with `unreachable=True` when the recipient opted out.
"""

from __future__ import annotations

import asyncio
import logging

import requests
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from outbox.tables import OutboxRow
from outbox.worker import SendError, SendResult
from settings import Settings

log = logging.getLogger(__name__)

# Recipient opted out (STOP) or blocked us: do not retry, mark the address unreachable.
UNREACHABLE_CODES = frozenset({21610, 30004, 30005, 30006})
STATUS_CALLBACK_PATH = "/sms/twilio/status"
WHATSAPP_PREFIX = "whatsapp:"
CERTIFICATE_KIND = "certificate"


class TwilioSender:
    def __init__(self, settings: Settings, *, timeout: float = 10.0) -> None:
        assert settings.twilio_account_sid and settings.twilio_auth_token and settings.twilio_from
        self.from_number = settings.twilio_from
        self.status_callback = settings.public_base_url.rstrip("/") + STATUS_CALLBACK_PATH
        self.client = Client(
            settings.twilio_account_sid,
            settings.twilio_auth_token,
            http_client=TwilioHttpClient(timeout=timeout),
        )
        # Every REST call of the `api` domain (Messages included) is built on this base URL.
        self.client.api.base_url = settings.twilio_api_base.rstrip("/")

    def _create(self, to: str, body: str, media_url: str | None = None) -> SendResult:
        extra = {"media_url": [media_url]} if media_url else {}
        message = self.client.messages.create(
            to=to, from_=self.from_number, body=body, status_callback=self.status_callback, **extra
        )
        return SendResult(provider_id=message.sid, provider_status=message.status)

    def _request(self, row: OutboxRow, text: str) -> tuple[str, str, str | None]:
        """(To, Body, MediaUrl) of the message for this row."""
        return row.address, text, None

    async def send(self, row: OutboxRow, text: str) -> SendResult:
        try:
            return await asyncio.to_thread(self._create, *self._request(row, text))
        except TwilioRestException as exc:
            raise _classify(exc) from exc
        except requests.Timeout as exc:
            raise SendError("Twilio did not answer in time", retryable=True, code="timeout") from exc
        except requests.RequestException as exc:
            raise SendError(
                f"Twilio unreachable: {type(exc).__name__}", retryable=True, code="network"
            ) from exc


class WhatsAppSender(TwilioSender):
    """The outbox's WhatsApp sender: the same Twilio Messages API, `From=whatsapp:<TWILIO_WHATSAPP_FROM>`
    and `To=whatsapp:<the user's number>`. A certificate row (kind `certificate`) goes as an image
    message: its sealed `url` param (the signed `/c/{token}/qr.png` link) is the `MediaUrl`, its text
    the caption."""

    def __init__(self, settings: Settings, *, timeout: float = 10.0) -> None:
        assert settings.twilio_whatsapp_from
        super().__init__(
            settings.model_copy(update={"twilio_from": settings.twilio_whatsapp_from}), timeout=timeout
        )
        self.from_number = WHATSAPP_PREFIX + settings.twilio_whatsapp_from.removeprefix(WHATSAPP_PREFIX)

    def _request(self, row: OutboxRow, text: str) -> tuple[str, str, str | None]:
        media = (row.params or {}).get("url") if row.kind == CERTIFICATE_KIND else None
        return WHATSAPP_PREFIX + row.address, text, media if isinstance(media, str) else None


def _classify(exc: TwilioRestException) -> SendError:
    status, code = exc.status, exc.code
    text = f"Twilio {status} (code {code}): {exc.msg}"
    if status == 429 or status >= 500:
        return SendError(text, retryable=True, code=str(code or status))
    return SendError(
        text,
        retryable=False,
        code=str(code or status),
        unreachable=code in UNREACHABLE_CODES if code is not None else False,
    )
