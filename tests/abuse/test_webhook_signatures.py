"""Forged gateway calls: a Twilio webhook without or with a wrong X-Twilio-Signature, a Telegram
update without or with a wrong secret token, a USSD request without or with a wrong gateway token
→ 403, and nothing of the forged request is processed. The genuine call next to it works."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from twilio.request_validator import RequestValidator

from tests.fakes.telegram_api import TelegramApiStandIn
from tests.faults.service import AN, Service, base_settings, expected, running

TWILIO_TOKEN = "twilio-auth-token-for-tests"
TELEGRAM_TOKEN = "7000000001:AAHk3dVaxChannelTestTokenQ9xYz"
TELEGRAM_SECRET = "telegram-secret_token-1"
USSD_TOKEN = "ussd-gateway-token-1"
PUBLIC = "https://vax.example.org"


@pytest.fixture
async def service(demo_db: str, tmp_path: Path) -> AsyncIterator[Service]:
    with TelegramApiStandIn() as telegram:
        settings = base_settings(
            demo_db,
            tmp_path / "data",
            public_base_url=PUBLIC,
            twilio_auth_token=TWILIO_TOKEN,
            telegram_bot_token=TELEGRAM_TOKEN,
            telegram_api_base=telegram.base_url,
            telegram_webhook_secret=TELEGRAM_SECRET,
            ussd_gateway_token=USSD_TOKEN,
        )
        async with running(settings) as svc:
            yield svc


def sign(params: dict[str, str], url: str, token: str = TWILIO_TOKEN) -> str:
    return RequestValidator(token).compute_signature(url, params)


def status_form() -> dict[str, str]:
    return {"MessageSid": "SM" + "1" * 32, "MessageStatus": "delivered", "AccountSid": "AC" + "0" * 32}


@pytest.mark.parametrize(
    "forgery",
    [
        "no signature",
        "empty signature",
        "signed with another token",
        "signed for another URL",
        "body changed",
    ],
)
async def test_twilio_inbound_sms_forged(service: Service, forgery: str) -> None:
    params = service.sms("+84900000901").form(f"DK {AN[1]} {AN[2]}")
    url = PUBLIC + "/sms/twilio"
    headers = {
        "no signature": {},
        "empty signature": {"X-Twilio-Signature": ""},
        "signed with another token": {"X-Twilio-Signature": sign(params, url, "another-token")},
        "signed for another URL": {"X-Twilio-Signature": sign(params, "https://evil.example/sms/twilio")},
        "body changed": {"X-Twilio-Signature": sign({**params, "Body": "HD"}, url)},
    }[forgery]
    answer = await service.client.post("/sms/twilio", data=params, headers=headers)
    assert answer.status_code == 403
    assert await service.outbox_to(AN[0]) == []  # not processed: no code sent
    genuine = await service.sms("+84900000901").send(f"DK {AN[1]} {AN[2]}")  # signs like Twilio
    assert genuine.startswith(expected("login.code_sent"))


@pytest.mark.parametrize("forgery", ["no signature", "wrong signature"])
async def test_twilio_status_callback_forged(service: Service, forgery: str) -> None:
    params = status_form()
    url = PUBLIC + "/sms/twilio/status"
    headers = {} if forgery == "no signature" else {"X-Twilio-Signature": sign(params, url, "another-token")}
    assert (await service.client.post("/sms/twilio/status", data=params, headers=headers)).status_code == 403
    genuine = await service.client.post(
        "/sms/twilio/status", data=params, headers={"X-Twilio-Signature": sign(params, url)}
    )
    assert genuine.status_code == 204


@pytest.mark.parametrize("secret", [None, "", "wrong-secret", TELEGRAM_SECRET + "x", TELEGRAM_SECRET[:-1]])
async def test_telegram_update_forged(service: Service, secret: str | None) -> None:
    update = {
        "update_id": 900001,
        "message": {
            "message_id": 1,
            "date": 1717400000,
            "chat": {"id": 548213307, "type": "private", "first_name": "An"},
            "from": {"id": 548213307, "is_bot": False, "first_name": "An", "language_code": "vi"},
            "text": "/start",
        },
    }
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["X-Telegram-Bot-Api-Secret-Token"] = secret
    answer = await service.client.post("/telegram/webhook", content=json.dumps(update), headers=headers)
    assert answer.status_code == 403
    headers["X-Telegram-Bot-Api-Secret-Token"] = TELEGRAM_SECRET
    genuine = await service.client.post("/telegram/webhook", content=json.dumps(update), headers=headers)
    assert genuine.status_code == 200, genuine.text


@pytest.mark.parametrize(
    ("headers", "query"),
    [
        ({}, ""),
        ({"X-Gateway-Token": ""}, ""),
        ({"X-Gateway-Token": "wrong"}, ""),
        ({}, "?token=wrong"),
        ({}, "?token="),
    ],
)
async def test_ussd_request_forged(service: Service, headers: dict[str, str], query: str) -> None:
    form = {
        "sessionId": "ATUid_forged",
        "serviceCode": "*384*2021#",
        "phoneNumber": AN[0],
        "networkCode": "45204",
    }
    answer = await service.client.post(
        "/ussd" + query, data={**form, "text": f"1*{AN[1]}*{AN[2]}"}, headers=headers
    )
    assert answer.status_code == 403
    assert await service.outbox_to(AN[0]) == []
    for genuine_headers, genuine_query in (
        ({"X-Gateway-Token": USSD_TOKEN}, ""),
        ({}, f"?token={USSD_TOKEN}"),
    ):
        genuine = await service.client.post(
            "/ussd" + genuine_query, data={**form, "text": ""}, headers=genuine_headers
        )
        assert genuine.status_code == 200 and genuine.text.startswith("CON ")
