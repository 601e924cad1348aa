"""`python main.py simulate {ussd,sms} --phone +84…`: a phone in the terminal (voice and whatsapp:
sms_gateway/voice_simulator.py, sms_gateway/whatsapp_simulator.py).

It sends the service exactly what the gateways send — USSD: Africa's Talking's form with the
session's inputs joined by `*` in `text`, with the gateway token; SMS: Twilio's webhook form,
signed with TWILIO_AUTH_TOKEN when that is set, with the gateway token otherwise — and prints
the answers. The gateway token is found the way the service finds it (USSD_GATEWAY_TOKEN, or the
file generated into DATA_DIR), so the simulator needs no setting when it shares the service's. SMS that the service sends to the
simulated phone (one-time codes, links) are shown as they appear in the outbox: the simulator
reads the outbox table of DATABASE_URL (read-only). That works whether or not Twilio is
configured and needs no debug endpoint in the service, so no HTTP route ever exposes codes.
"""

from __future__ import annotations

import threading
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable

import httpx
from sqlalchemy import select
from twilio.request_validator import RequestValidator

from conversations.outbound import make_renderer
from db.base import make_sync_engine
from outbox.sealing import OutboxSeal
from outbox.tables import OutboxRow
from registry_client.identity import normalize_phone
from settings import Settings, main_command
from sms_gateway.gateway_token import HEADER as GATEWAY_TOKEN_HEADER

Printer = Callable[[str], None]
REFUSED_HINT = (
    "the service refused the gateway's credentials: run the simulator with the service's DATA_DIR "
    "(or the same USSD_GATEWAY_TOKEN / TWILIO_AUTH_TOKEN)"
)


def twilio_headers(settings: Settings, signed_url: str, params: dict[str, str]) -> dict[str, str]:
    """What an honest Twilio webhook request carries: its signature over `signed_url` and `params`
    with TWILIO_AUTH_TOKEN, else the gateway token (found as the service finds it)."""
    if settings.twilio_auth_token:
        validator = RequestValidator(settings.twilio_auth_token)
        return {"X-Twilio-Signature": validator.compute_signature(signed_url, params)}
    return {GATEWAY_TOKEN_HEADER: settings.resolved_gateway_token}


class OutboxWatcher:
    """Prints SMS the service queued for `phone` (polls the outbox table every second)."""

    def __init__(self, settings: Settings, phone: str, show: Printer = print) -> None:
        self.engine = make_sync_engine(settings.database_url)
        self.phone, self.show = phone, show
        self.render = make_renderer(
            strip_sms_diacritics=settings.sms_strip_diacritics,
            hotline=settings.hotline_number,
            seal=OutboxSeal(settings.secret_keys.outbox_seal),  # the local outbox shows codes here only
        )
        self.last_id = self._newest_id()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="outbox-watcher", daemon=True)

    def _newest_id(self) -> int:
        try:
            with self.engine.connect() as conn:
                ids = (
                    conn.execute(select(OutboxRow.id).order_by(OutboxRow.id.desc()).limit(1)).scalars().all()
                )
                return int(ids[0]) if ids else 0
        except Exception:
            return 0

    def poll(self) -> list[str]:
        try:
            with self.engine.connect() as conn:
                rows = conn.execute(
                    select(OutboxRow)
                    .where(
                        OutboxRow.channel == "sms",
                        OutboxRow.address == self.phone,
                        OutboxRow.id > self.last_id,
                    )
                    .order_by(OutboxRow.id)
                ).all()
        except Exception:
            return []
        texts = []
        for row in rows:
            self.last_id = max(self.last_id, row.id)
            texts.append(self.render(row))  # type: ignore[arg-type]
        return texts

    def flush(self) -> None:
        """Shows what arrived since the last look (called after every answer, and every second)."""
        with self._lock:
            for text in self.poll():
                self.show(f"  ✉  SMS to {self.phone}: {text}")

    def _loop(self) -> None:
        while not self._stop.wait(1.0):
            self.flush()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.engine.dispose()


class UssdPhone:
    def __init__(self, client: httpx.Client, base_url: str, phone: str, token: str) -> None:
        self.client, self.base_url, self.phone, self.token = client, base_url.rstrip("/"), phone, token
        self.session_id = ""
        self.inputs: list[str] = []

    def dial(self) -> str:
        self.session_id, self.inputs = "ATUid_" + uuid.uuid4().hex[:16], []
        return self._post()

    def send(self, text: str) -> str:
        self.inputs.append(text)
        return self._post()

    def _post(self) -> str:
        response = self.client.post(
            f"{self.base_url}/ussd",
            data={
                "sessionId": self.session_id,
                "serviceCode": "*384*2021#",
                "phoneNumber": self.phone,
                "networkCode": "45204",
                "text": "*".join(self.inputs),
            },
            headers={GATEWAY_TOKEN_HEADER: self.token},
        )
        if response.status_code == 403:
            return f"END [HTTP 403] {REFUSED_HINT}"
        if response.status_code != 200:
            return f"END [HTTP {response.status_code}] {response.text[:200]}"
        return response.text


class SmsPhone:
    def __init__(self, client: httpx.Client, settings: Settings, base_url: str, phone: str) -> None:
        self.client, self.settings, self.phone = client, settings, phone
        self.url = base_url.rstrip("/") + "/sms/twilio"
        self.signed_url = settings.public_base_url.rstrip("/") + "/sms/twilio"

    def send(self, body: str) -> list[str]:
        params = {
            "ToCountry": "VN",
            "SmsMessageSid": "",
            "NumMedia": "0",
            "SmsSid": "",
            "SmsStatus": "received",
            "Body": body,
            "To": self.settings.twilio_from or "+15005550006",
            "NumSegments": "1",
            "MessageSid": "SM" + uuid.uuid4().hex,
            "AccountSid": self.settings.twilio_account_sid or "AC" + "0" * 32,
            "From": self.phone,
            "ApiVersion": "2010-04-01",
        }
        params["SmsMessageSid"] = params["SmsSid"] = params["MessageSid"]
        response = self.client.post(
            self.url, data=params, headers=twilio_headers(self.settings, self.signed_url, params)
        )
        if response.status_code == 403:
            return [f"[HTTP 403] {REFUSED_HINT}"]
        if response.status_code != 200:
            return [f"[HTTP {response.status_code}] {response.text[:200]}"]
        root = ET.fromstring(response.text)
        return [m.text or "" for m in root.iter("Message")]


def _ussd_loop(
    phone: UssdPhone, read: Callable[[str], str], show: Printer, flush: Callable[[], None] = lambda: None
) -> None:
    show("USSD: Enter dials the service code, q quits.")
    while True:
        if read("[dial] ").strip().lower() in ("q", "quit", "exit"):
            return
        screen = phone.dial()
        while True:
            show("\n" + screen[4:] if screen[:4] in ("CON ", "END ") else screen)
            flush()
            if not screen.startswith("CON"):
                show("(session ended)")
                break
            answer = read("> ")
            if answer.strip().lower() in ("q", "quit", "exit"):
                return
            screen = phone.send(answer.strip())


def _sms_loop(
    phone: SmsPhone, read: Callable[[str], str], show: Printer, flush: Callable[[], None] = lambda: None
) -> None:
    show("SMS: type a message (e.g. HD, MUI, DK 001085012345 14031985), q quits.")
    while True:
        body = read("sms> ")
        if body.strip().lower() in ("q", "quit", "exit"):
            return
        for text in phone.send(body) or ["(no reply)"]:
            show(f"  ← {text}")
        flush()


def run_simulator(settings: Settings, channel: str, phone: str, url: str | None) -> int:
    number = normalize_phone(phone)
    if number is None:
        print(f"Not a phone number: {phone}")
        return 2
    base_url = url or settings.public_base_url
    watcher = OutboxWatcher(settings, number)
    watcher.start()
    print(f"Simulated phone {number} → {base_url} ({channel}). SMS to this phone appear as ✉.")
    try:
        with httpx.Client(timeout=20.0) as client:
            if channel == "ussd":
                phone_ussd = UssdPhone(client, base_url, number, settings.resolved_gateway_token)
                _ussd_loop(phone_ussd, input, print, watcher.flush)
            elif channel == "whatsapp":
                from sms_gateway.whatsapp_simulator import WhatsAppInbox, WhatsAppPhone, whatsapp_loop

                inbox = WhatsAppInbox(settings, number)
                try:
                    chat = WhatsAppPhone(client, settings, base_url, number)
                    whatsapp_loop(chat, inbox, input, print, watcher.flush)
                finally:
                    inbox.close()
            elif channel == "voice":
                from sms_gateway.voice_simulator import VoicePhone, voice_loop

                voice_loop(VoicePhone(client, settings, base_url, number), input, print, watcher.flush)
            else:
                _sms_loop(SmsPhone(client, settings, base_url, number), input, print, watcher.flush)
    except (EOFError, KeyboardInterrupt):
        print()
    except httpx.ConnectError:
        print(f"The service does not answer at {base_url}. Start it with `{main_command()}`.")
        return 1
    finally:
        watcher.stop()
    return 0
