"""WhatsApp on `POST /sms/twilio` (From=whatsapp:+…) against recorded Twilio requests: the answer
is an empty TwiML, the replies are WhatsApp rows in the outbox; signatures, the gateway token,
media only from Twilio, the login by a code sent by SMS to the registered phone."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from datetime import date
from typing import Any

import pytest
from fastapi.testclient import TestClient

from outbox.tables import OutboxRow
from registry_client.models import CaseKind, ClaimedDose, DosesConcerned, NewCorrection
from tests.fakes.twilio_api import TwilioStandIn
from tests.sms_gateway.conftest import AUTH_TOKEN, payload
from tests.sms_gateway.test_twilio_webhook import FORM, sign, with_fields

WA_FROM = "+14155238886"
AN = "+84901234567"  # An's registered phone, and the WhatsApp number of these payloads
AN_ID, AN_DOB = "001085012345", "14031985"
OTHER = "+84912000111"  # a WhatsApp number the registry does not know
TEXT = payload("twilio_whatsapp_text.form")
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 2000
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response />'


def outbox(client: TestClient, channel: str, address: str) -> list[OutboxRow]:
    box = client.app.state.outbox  # type: ignore[attr-defined]
    return list(asyncio.run(box.messages_to(channel, address)))


def texts(client: TestClient, address: str = AN) -> list[str]:
    return [row.text or "" for row in outbox(client, "whatsapp", address)]


def post(client: TestClient, body: bytes, *, token: str = AUTH_TOKEN, signed: bool = True) -> Any:
    headers = sign("/sms/twilio", body, token) if signed else {**FORM, "X-Twilio-Signature": "AAAA"}
    return client.post("/sms/twilio", content=body, headers=headers)


def message(body: str, sid: str, sender: str = AN) -> bytes:
    return with_fields(TEXT, Body=body, MessageSid=sid, SmsSid=sid, From=f"whatsapp:{sender}")


# name, body, expected status, a text the WhatsApp replies contain
CASES = [
    ("text keyword with diacritics", TEXT, 200, "Nhập số CCCD (12 số)"),
    (
        "quick-reply button: its payload is the option",
        payload("twilio_whatsapp_button.form"),
        200,
        "Nhập số CCCD",
    ),
    ("location", payload("twilio_whatsapp_location.form"), 200, "chưa đọc được loại tin nhắn này"),
    (
        "contact card",
        payload("twilio_whatsapp_contacts.form", media_url="https://api.twilio.com/x"),
        200,
        "chưa đọc được",
    ),
    ("unknown type", with_fields(TEXT, MessageType="reaction", Body="👍"), 200, "chưa đọc được"),
    ("no MessageType (older request)", with_fields(TEXT, MessageType=None), 200, "Nhập số CCCD"),
    ("missing MessageSid", with_fields(TEXT, MessageSid=None, SmsSid=None), 400, ""),
    ("whatsapp: without a number", with_fields(TEXT, From="whatsapp:"), 400, ""),
    ("whatsapp: garbage number", with_fields(TEXT, From="whatsapp:not-a-number"), 400, ""),
    ("oversized body", with_fields(TEXT, Body="x" * 40_000), 413, ""),
]


@pytest.mark.parametrize(("name", "body", "status", "contains"), CASES, ids=[c[0] for c in CASES])
def test_whatsapp_payload_table(
    make_client: Callable[..., TestClient], name: str, body: bytes, status: int, contains: str
) -> None:
    client = make_client(twilio_auth_token=AUTH_TOKEN, twilio_whatsapp_from=WA_FROM)
    response = post(client, body)
    assert response.status_code == status, response.text
    if status != 200:
        assert texts(client) == [] and "Traceback" not in response.text
        return
    assert response.headers["content-type"].startswith("application/xml")
    assert response.text == EMPTY_TWIML  # the replies go through the outbox
    replies = texts(client)
    assert any(contains in text for text in replies), replies
    assert all(row.kind == "reply" for row in outbox(client, "whatsapp", AN))
    assert outbox(client, "sms", AN) == []  # nothing by SMS for a plain conversation


def test_whatsapp_signature_refused(make_client: Callable[..., TestClient]) -> None:
    client = make_client(twilio_auth_token=AUTH_TOKEN, twilio_whatsapp_from=WA_FROM)
    assert post(client, TEXT, signed=False).status_code == 403
    assert post(client, TEXT, token="another-account-token").status_code == 403
    assert texts(client) == []
    assert post(client, TEXT).status_code == 200 and texts(client)  # the honest request still works


def test_without_an_auth_token_the_gateway_token_is_demanded(make_client: Callable[..., TestClient]) -> None:
    client = make_client()  # the quick start: no Twilio, WhatsApp only from the local simulator
    token = client.headers.pop("X-Gateway-Token")
    assert client.post("/sms/twilio", content=TEXT, headers=FORM).status_code == 403
    assert texts(client) == []
    response = client.post("/sms/twilio", content=TEXT, headers={**FORM, "X-Gateway-Token": token})
    assert response.status_code == 200 and any("Nhập số CCCD" in t for t in texts(client))


def test_whatsapp_refused_when_not_configured(make_client: Callable[..., TestClient]) -> None:
    """Twilio configured without TWILIO_WHATSAPP_FROM: a WhatsApp message is a clear 400, SMS go on."""
    client = make_client(twilio_auth_token=AUTH_TOKEN)
    response = post(client, TEXT)
    assert response.status_code == 400 and "TWILIO_WHATSAPP_FROM" in response.text
    assert texts(client) == []
    sms = payload("twilio_inbound_sms.form")
    assert post(client, sms).status_code == 200


def test_a_repeated_message_sid_queues_the_replies_once(make_client: Callable[..., TestClient]) -> None:
    client = make_client(twilio_auth_token=AUTH_TOKEN, twilio_whatsapp_from=WA_FROM)
    assert post(client, TEXT).status_code == 200
    first = texts(client)
    assert post(client, TEXT).status_code == 200  # Twilio retried the webhook
    assert texts(client) == first and len(first) == 1


def test_login_needs_the_code_sent_by_sms_to_the_registered_phone(
    make_client: Callable[..., TestClient],
) -> None:
    """A WhatsApp number, even the registered phone's own, proves nothing: the code goes by SMS
    to the registered phone and the WhatsApp number is bound only once it is typed back."""
    client = make_client(twilio_auth_token=AUTH_TOKEN, twilio_whatsapp_from=WA_FROM)
    post(client, message("1", "SMwa001"))
    assert "Nhập số CCCD" in texts(client)[-1]  # no shortcut for the registered phone's WhatsApp
    post(client, message(AN_ID, "SMwa002"))
    post(client, message(AN_DOB, "SMwa003"))
    assert "Mã 6 số đã gửi qua SMS" in texts(client)[-1]
    [otp] = outbox(client, "sms", AN)  # by SMS, never on WhatsApp
    assert otp.kind == "otp" and not any(re.search(r"\b\d{6}\b", t) for t in texts(client))
    code = str((otp.params or {})["code"])
    wrong = "000000" if code != "000000" else "111111"
    post(client, message(wrong, "SMwa004"))
    assert "Mã không đúng. Còn 4 lần thử" in texts(client)[-1]
    post(client, message(code, "SMwa005"))
    answer = texts(client)[-1]
    assert "Nguyễn Văn An" in answer and "Mũi 1: AstraZeneca, 02/08/2021" in answer  # diacritics kept
    bindings = client.app.state.conversations.bindings  # type: ignore[attr-defined]
    assert asyncio.run(bindings.persons_for("whatsapp", AN))
    assert asyncio.run(bindings.persons_for("sms", AN)) == []  # only the WhatsApp identity


def test_every_wrong_code_is_counted(make_client: Callable[..., TestClient]) -> None:
    client = make_client(twilio_auth_token=AUTH_TOKEN, twilio_whatsapp_from=WA_FROM)
    for i, text in enumerate(("1", AN_ID, AN_DOB)):
        post(client, message(text, f"SMwb{i}", OTHER))
    [otp] = outbox(client, "sms", AN)
    code = str((otp.params or {})["code"])
    wrongs = [f"{(int(code) + k) % 1_000_000:06d}" for k in range(1, 8)]
    for i, guess in enumerate(wrongs):
        post(client, message(guess, f"SMwc{i}", OTHER))
    assert any("Đăng nhập tạm khóa" in t for t in texts(client, OTHER))
    post(client, message(code, "SMwd", OTHER))  # the right code after the lock: refused
    bindings = client.app.state.conversations.bindings  # type: ignore[attr-defined]
    assert asyncio.run(bindings.persons_for("whatsapp", OTHER)) == []
    assert "Nguyễn Văn An" not in " ".join(texts(client, OTHER))


def _open_case(client: TestClient, channel_address: str) -> str:
    registry = client.app.state.registry  # type: ignore[attr-defined]
    bindings = client.app.state.conversations.bindings  # type: ignore[attr-defined]

    async def submit() -> str:
        person = await registry.find_person(AN_ID, date(1985, 3, 14))
        await bindings.bind("whatsapp", channel_address, person.id, via_phone=AN)
        case = await registry.submit_correction(
            NewCorrection(
                kind=CaseKind.MISSING_DOSE,
                doses_concerned=DosesConcerned.FIRST,
                claimed=ClaimedDose(),
                channel="whatsapp",
                channel_address=channel_address,
                person_id=person.id,
            )
        )
        return case.ref

    return asyncio.run(submit())


def _attachments(client: TestClient, ref: str) -> list[str]:
    registry = client.app.state.registry  # type: ignore[attr-defined]
    return [a.content_type for a in asyncio.run(registry.get_correction(ref)).attachments]


def test_a_photo_is_attached_to_the_open_report(make_client: Callable[..., TestClient]) -> None:
    with TwilioStandIn() as twilio:
        client = make_client(
            twilio_account_sid=twilio.account_sid,
            twilio_auth_token=twilio.auth_token,
            twilio_api_base=twilio.base_url,
            twilio_whatsapp_from=WA_FROM,
        )
        ref = _open_case(client, AN)
        body = payload("twilio_whatsapp_image.form", media_url=twilio.add_media(JPEG, "image/jpeg"))
        response = post(client, body, token=twilio.auth_token)
        assert response.status_code == 200 and response.text == EMPTY_TWIML
        assert _attachments(client, ref) == ["image/jpeg"]
        assert any(f"Đã đính kèm ảnh vào phản ánh {ref}" in t for t in texts(client))


def test_media_from_anywhere_but_twilio_is_never_fetched(make_client: Callable[..., TestClient]) -> None:
    """MediaUrl0 naming another host (an internal service, another 'Twilio'): refused unrequested."""
    with TwilioStandIn() as twilio, TwilioStandIn() as elsewhere:
        client = make_client(
            twilio_account_sid=twilio.account_sid,
            twilio_auth_token=twilio.auth_token,
            twilio_api_base=twilio.base_url,
            twilio_whatsapp_from=WA_FROM,
        )
        ref = _open_case(client, AN)
        body = payload("twilio_whatsapp_image.form", media_url=elsewhere.add_media(JPEG, "image/jpeg"))
        assert post(client, body, token=twilio.auth_token).status_code == 200
        assert elsewhere.requests == [] and twilio.requests == []
        assert _attachments(client, ref) == []
        assert any("Không nhận được tệp" in t for t in texts(client))


def test_a_contact_card_is_not_downloaded(make_client: Callable[..., TestClient]) -> None:
    with TwilioStandIn() as twilio:
        client = make_client(
            twilio_account_sid=twilio.account_sid,
            twilio_auth_token=twilio.auth_token,
            twilio_api_base=twilio.base_url,
            twilio_whatsapp_from=WA_FROM,
        )
        url = twilio.add_media(b"BEGIN:VCARD\r\nEND:VCARD\r\n", "text/vcard")
        body = payload("twilio_whatsapp_contacts.form", media_url=url)
        assert post(client, body, token=twilio.auth_token).status_code == 200
        assert twilio.requests == [] and any("chưa đọc được" in t for t in texts(client))
