"""The real app in this event loop (lifespan included) and callers that speak the gateways' wire
formats: Africa's Talking USSD forms with the gateway token, Twilio SMS webhooks (signed when the
app has an auth token, with the gateway token otherwise). `Service.gateway_headers()` gives the
headers an honest gateway sends, for tests that post by hand.

Shared by tests/faults and tests/abuse. Assertions compare with the engine's own catalogue texts
(`expected(...)`), rendered the way SMS/USSD show them (without diacritics).
"""

from __future__ import annotations

import re
import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from fastapi import FastAPI
from twilio.request_validator import RequestValidator

from app import create_app
from conversations.i18n import CATALOGUES, t
from conversations.text import strip_diacritics
from settings import Settings

T = TypeVar("T")
HOTLINE = "1900 9095"
REF = re.compile(r"PA-[0-9A-Z]{4}-[0-9A-Z]{2}")

# Demo identities (registry_client/embedded/demo.py)
AN = ("+84901234567", "001085012345", "14031985")  # three doses, sites HN001/HN002
BINH = ("+84912345678", "079190004321", "21071990")  # one dose
CUONG = ("+84987654321", "048095006789", "30111995")  # no dose
FAMILY_PHONE = "+84938111222"  # mother, child, grandfather
FAMILY = (("001182003333", "02051982"), ("001210004444", "24122010"), ("001050005555", "08011950"))


class ManualTicks:
    """A monotonic clock the test moves (the registry wrapper's breaker cool-down and cache ages):
    "15 s later" without sleeping 15 s, and no assertion that depends on how fast the machine is."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def expected(key: str, lang: str = "vi", **params: Any) -> str:
    """A catalogue text as an SMS/USSD caller sees it."""
    return strip_diacritics(t(lang, key, hotline=HOTLINE, **params))


def expected_start(key: str, lang: str = "vi") -> str:
    """The beginning of a catalogue text, up to its first variable part."""
    return strip_diacritics(CATALOGUES[lang][key].split("{")[0])


def base_settings(database_url: str, data_dir: Any, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "data_dir": data_dir,
        "public_base_url": "http://testserver",
        "run_workers": False,
        "secret_key": "faults-secret-key",
        "hotline_number": HOTLINE,
        "twilio_account_sid": None,
        "twilio_auth_token": None,
        "twilio_from": None,
        "telegram_bot_token": None,
        "ussd_gateway_token": None,
    }
    values.update(overrides)
    return Settings(**values)


@dataclass
class Service:
    app: FastAPI
    client: httpx.AsyncClient
    settings: Settings

    @property
    def state(self) -> Any:
        return self.app.state

    def gateway_headers(self) -> dict[str, str]:
        """What the USSD gateway (and, without TWILIO_AUTH_TOKEN, the SMS gateway) must send."""
        return {"X-Gateway-Token": self.settings.resolved_gateway_token}

    def ussd(self, phone: str) -> UssdCaller:
        return UssdCaller(self, phone)

    def sms(self, phone: str) -> SmsCaller:
        return SmsCaller(self, phone)

    async def outbox_to(self, phone: str, kind: str | None = None) -> list[Any]:
        rows = await self.state.outbox.messages_to("sms", phone)
        return [r for r in rows if kind is None or r.kind == kind]

    async def last_code(self, phone: str) -> str:
        codes = await self.outbox_to(phone, "otp")
        assert codes, f"no one-time code was queued for {phone}"
        return str(codes[-1].params["code"])


@asynccontextmanager
async def running(
    settings: Settings, *, prepare: Callable[[FastAPI], Awaitable[None]] | None = None
) -> AsyncIterator[Service]:
    """The app with its lifespan, called over ASGI (no network, no thread)."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        if prepare is not None:
            await prepare(app)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=30) as client:
            yield Service(app, client, settings)


class UssdCaller:
    """A phone dialling the USSD code: every request carries all inputs of the session joined by `*`."""

    def __init__(self, service: Service, phone: str) -> None:
        self.service, self.phone = service, phone
        self.session_id = ""
        self.inputs: list[str] = []
        self.last: httpx.Response | None = None

    async def dial(self) -> str:
        self.session_id, self.inputs = "ATUid_" + uuid.uuid4().hex[:16], []
        return await self._post()

    async def send(self, text: str) -> str:
        self.inputs.append(text)
        return await self._post()

    async def answers(self, *texts: str) -> str:
        screen = ""
        for text in texts:
            screen = await self.send(text)
        return screen

    async def whole(self, screen: str) -> str:
        """`screen` and the pages after it (98 = next page), joined."""
        pages = [screen]
        while "\n98 " in pages[-1] and len(pages) < 10:
            pages.append(await self.send("98"))
        return "\n".join(pages)

    async def _post(self) -> str:
        self.last = await self.service.client.post(
            "/ussd",
            data={
                "sessionId": self.session_id,
                "serviceCode": "*384*2021#",
                "phoneNumber": self.phone,
                "networkCode": "45204",
                "text": "*".join(self.inputs),
            },
            headers=self.service.gateway_headers(),
        )
        assert self.last.status_code == 200, (self.last.status_code, self.last.text)
        assert self.last.text.startswith(("CON ", "END ")) and len(self.last.text) <= 182, self.last.text
        return self.last.text


class SmsCaller:
    """A phone texting the service's Twilio number (Twilio's webhook form, signed like Twilio)."""

    def __init__(self, service: Service, phone: str) -> None:
        self.service, self.phone = service, phone
        self.last: httpx.Response | None = None

    def form(self, body: str, sid: str | None = None) -> dict[str, str]:
        sid = sid or "SM" + uuid.uuid4().hex
        settings = self.service.settings
        return {
            "ToCountry": "VN",
            "SmsMessageSid": sid,
            "NumMedia": "0",
            "SmsSid": sid,
            "SmsStatus": "received",
            "Body": body,
            "To": settings.twilio_from or "+15005550006",
            "NumSegments": "1",
            "MessageSid": sid,
            "AccountSid": settings.twilio_account_sid or "AC" + "0" * 32,
            "From": self.phone,
            "ApiVersion": "2010-04-01",
        }

    async def whole(self, reply: str) -> str:
        """`reply` and the pages after it (98 = next page), joined."""
        pages = [reply]
        while "98" in pages[-1].split()[-3:] and len(pages) < 10:
            pages.append(await self.send("98"))
        return "\n".join(pages)

    async def send(self, body: str, sid: str | None = None) -> str:
        params = self.form(body, sid)
        settings = self.service.settings
        headers = {} if settings.twilio_auth_token else self.service.gateway_headers()
        if settings.twilio_auth_token:
            url = settings.public_base_url.rstrip("/") + "/sms/twilio"
            headers["X-Twilio-Signature"] = RequestValidator(settings.twilio_auth_token).compute_signature(
                url, params
            )
        self.last = await self.service.client.post("/sms/twilio", data=params, headers=headers)
        assert self.last.status_code == 200, (self.last.status_code, self.last.text)
        assert self.last.headers["content-type"].startswith("application/xml")
        return "\n".join(m.text or "" for m in ET.fromstring(self.last.text).iter("Message"))


def flat(text: str) -> str:
    """Screen text with line breaks as spaces (catalogue lines are joined by newlines)."""
    return " ".join(text.split())
