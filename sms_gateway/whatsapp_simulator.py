"""`python main.py simulate whatsapp --phone +84…`: a WhatsApp chat in the terminal.

It posts `POST /sms/twilio` exactly as Twilio does for a WhatsApp message (`From=whatsapp:+84…`,
`MessageType`, `ProfileName`, `WaId`; signed with TWILIO_AUTH_TOKEN, or with the gateway token
without one) and shows what the service queued for that WhatsApp number — the replies and the
certificate image (its link) — read from the outbox table of DATABASE_URL, as the SMS simulator
shows SMS. Against the quick-start server (no Twilio) the replies stay in that outbox, which is
where this reads them; SMS to the same phone (the one-time code) appear as ✉.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable

import httpx
from sqlalchemy import select

from conversations.outbound import make_renderer
from db.base import make_sync_engine
from outbox.sealing import OutboxSeal, SealBroken
from outbox.store import open_row
from outbox.tables import OutboxRow
from settings import Settings
from sms_gateway.sender import CERTIFICATE_KIND, WHATSAPP_PREFIX
from sms_gateway.simulator import REFUSED_HINT, twilio_headers

PATH = "/sms/twilio"
SANDBOX_NUMBER = "+14155238886"  # Twilio's WhatsApp sandbox sender, when TWILIO_WHATSAPP_FROM is unset

Printer = Callable[[str], None]


class WhatsAppPhone:
    def __init__(self, client: httpx.Client, settings: Settings, base_url: str, phone: str) -> None:
        self.client, self.settings, self.phone = client, settings, phone
        self.url = base_url.rstrip("/") + PATH
        self.signed_url = settings.public_base_url.rstrip("/") + PATH

    def form(self, body: str, **fields: str) -> dict[str, str]:
        sid = "SM" + uuid.uuid4().hex
        return {
            "SmsMessageSid": sid,
            "NumMedia": "0",
            "ProfileName": "Simulator",
            "MessageType": "text",
            "SmsSid": sid,
            "WaId": self.phone.lstrip("+"),
            "SmsStatus": "received",
            "Body": body,
            "To": WHATSAPP_PREFIX + (self.settings.twilio_whatsapp_from or SANDBOX_NUMBER),
            "NumSegments": "1",
            "ReferralNumMedia": "0",
            "MessageSid": sid,
            "AccountSid": self.settings.twilio_account_sid or "AC" + "0" * 32,
            "From": WHATSAPP_PREFIX + self.phone,
            "ApiVersion": "2010-04-01",
            **fields,
        }

    def send(self, body: str, **fields: str) -> str | None:
        """Posts one message; None when the service took it, else what went wrong."""
        params = self.form(body, **fields)
        response = self.client.post(
            self.url, data=params, headers=twilio_headers(self.settings, self.signed_url, params)
        )
        if response.status_code == 403:
            return f"[HTTP 403] {REFUSED_HINT}"
        if response.status_code != 200:
            return f"[HTTP {response.status_code}] {response.text[:200]}"
        return None


class WhatsAppInbox:
    """What the service queued for the WhatsApp number (read-only on the outbox table)."""

    def __init__(self, settings: Settings, phone: str) -> None:
        self.engine = make_sync_engine(settings.database_url)
        self.phone = phone
        self.seal = OutboxSeal(settings.secret_keys.outbox_seal)
        self.render = make_renderer(
            strip_sms_diacritics=settings.sms_strip_diacritics,
            hotline=settings.hotline_number,
            seal=self.seal,
        )
        self._lock = threading.Lock()
        self.last_id = self._newest_id()

    def _newest_id(self) -> int:
        with self.engine.connect() as conn:
            newest = conn.execute(select(OutboxRow.id).order_by(OutboxRow.id.desc()).limit(1)).scalar()
            return int(newest or 0)

    def poll(self) -> list[str]:
        """The messages that arrived since the last look, as a chat shows them."""
        with self._lock, self.engine.connect() as conn:
            rows = conn.execute(
                select(OutboxRow)
                .where(
                    OutboxRow.channel == "whatsapp",
                    OutboxRow.address == self.phone,
                    OutboxRow.id > self.last_id,
                )
                .order_by(OutboxRow.id)
            ).all()
            shown = []
            for row in rows:
                self.last_id = max(self.last_id, row.id)
                shown.append(self._shown(row))
            return shown

    def _shown(self, row: object) -> str:
        text = self.render(row)  # type: ignore[arg-type]
        if getattr(row, "kind", None) != CERTIFICATE_KIND:
            return text
        try:
            url = (open_row(self.seal, row).params or {}).get("url", "")
        except SealBroken:
            url = "(link sealed with another SECRET_KEY)"
        return f"🖼  [image {url}]\n{text}"

    def close(self) -> None:
        self.engine.dispose()


def whatsapp_loop(
    phone: WhatsAppPhone,
    inbox: WhatsAppInbox,
    read: Callable[[str], str],
    show: Printer,
    flush: Callable[[], None] = lambda: None,
) -> None:
    show(
        "WhatsApp: type a message (e.g. 1, MUI, DK 001085012345 14031985), /location sends a location, q quits."
    )
    while True:
        body = read("whatsapp> ")
        if body.strip().lower() in ("q", "quit", "exit"):
            return
        if body.strip() == "/location":
            problem = phone.send("", MessageType="location", Latitude="21.0285", Longitude="105.8542")
        else:
            problem = phone.send(body)
        if problem is not None:
            show(f"  ← {problem}")
        for text in inbox.poll() or ["(no reply yet)"]:
            show("  ← " + text.replace("\n", "\n    "))
        flush()
