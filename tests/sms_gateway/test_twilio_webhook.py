"""`POST /sms/twilio` and `/sms/twilio/status` against recorded payloads (courier-style tables)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from urllib.parse import parse_qsl, urlencode

import pytest
from fastapi.testclient import TestClient
from twilio.request_validator import RequestValidator

from outbox.store import OutboundMessage
from tests.sms_gateway.conftest import AUTH_TOKEN, PUBLIC, payload

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def sign(path: str, body: bytes, token: str = AUTH_TOKEN) -> dict[str, str]:
    params = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    return {**FORM, "X-Twilio-Signature": RequestValidator(token).compute_signature(PUBLIC + path, params)}


def with_fields(body: bytes, **fields: str | None) -> bytes:
    params = dict(parse_qsl(body.decode(), keep_blank_values=True))
    for key, value in fields.items():
        if value is None:
            params.pop(key, None)
        else:
            params[key] = value
    return urlencode(params).encode()


INBOUND = payload("twilio_inbound_sms.form")
# name, body, signed, expected status, text the answer contains
INBOUND_CASES = [
    ("valid keyword (mũi)", INBOUND, True, 200, "Nhap so CCCD"),
    ("missing From", with_fields(INBOUND, From=None), True, 400, ""),
    ("missing MessageSid", with_fields(INBOUND, MessageSid=None, SmsSid=None), True, 400, ""),
    ("foreign garbage From", with_fields(INBOUND, From="not-a-number"), True, 400, ""),
    ("missing Body", with_fields(INBOUND, Body=None), True, 200, "MUI: mui da tiem"),
    ("emoji Body", with_fields(INBOUND, Body="😀🙏 cảm ơn"), True, 200, "MUI: mui da tiem"),
    ("bad signature", INBOUND, False, 403, ""),
    ("oversized body", with_fields(INBOUND, Body="x" * 40_000), True, 413, ""),
    ("non-UTF-8 percent escape", INBOUND.replace(b"Body=M%C5%A9i", b"Body=M%FF%FEi"), True, 400, ""),
    ("non-UTF-8 raw bytes", INBOUND.replace(b"Body=M%C5%A9i", b"Body=M\xe9i"), True, 400, ""),
]


@pytest.mark.parametrize(
    ("name", "body", "signed", "status", "contains"), INBOUND_CASES, ids=[c[0] for c in INBOUND_CASES]
)
def test_inbound_sms_table(
    make_client: Callable[..., TestClient], name: str, body: bytes, signed: bool, status: int, contains: str
) -> None:
    client = make_client(twilio_auth_token=AUTH_TOKEN)
    headers = sign("/sms/twilio", body) if signed else {**FORM, "X-Twilio-Signature": "AAAA"}
    response = client.post("/sms/twilio", content=body, headers=headers)
    assert response.status_code == status, response.text
    if status == 200:
        assert response.headers["content-type"].startswith("application/xml")
        assert response.text.startswith('<?xml version="1.0" encoding="UTF-8"?><Response><Message>')
        assert contains in response.text


def test_no_signature_needed_without_an_auth_token(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    response = client.post("/sms/twilio", content=INBOUND, headers=FORM)
    assert response.status_code == 200 and "Nhap so CCCD" in response.text


def test_a_repeated_message_sid_is_answered_but_processed_once(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client(twilio_auth_token=AUTH_TOKEN)
    body = with_fields(INBOUND, Body="DK 001085012345 14031985")
    first = client.post("/sms/twilio", content=body, headers=sign("/sms/twilio", body))
    second = client.post("/sms/twilio", content=body, headers=sign("/sms/twilio", body))
    assert first.status_code == second.status_code == 200
    assert first.text == second.text and "Ma 6 so da gui" in first.text
    outbox = client.app.state.outbox  # type: ignore[attr-defined]
    assert len(asyncio.run(outbox.messages_to("sms", "+84901234567"))) == 1


def _queued_sms(client: TestClient, sid: str) -> int:
    """An outbox row that Twilio accepted as `sid`."""
    outbox = client.app.state.outbox  # type: ignore[attr-defined]

    async def put() -> int:
        row_id = await outbox.put(OutboundMessage("sms", "+84901234567", "link", text="hello"))
        assert row_id is not None
        await outbox.mark_sent(row_id, sid, "queued")
        return row_id

    return asyncio.run(put())


def _row(client: TestClient, row_id: int) -> tuple[str, str | None, str | None]:
    outbox = client.app.state.outbox  # type: ignore[attr-defined]
    rows = asyncio.run(outbox.messages_to("sms", "+84901234567"))
    row = next(r for r in rows if r.id == row_id)
    return row.status, row.provider_status, row.error_code


SID = "SM" + "ab" * 16
STATUS_CASES = [
    (
        "delivered",
        payload("twilio_status_delivered.form", sid=SID),
        True,
        204,
        ("delivered", "delivered", None),
    ),
    (
        "undelivered 30006",
        payload("twilio_status_undelivered.form", sid=SID),
        True,
        204,
        ("failed", "undelivered", "30006"),
    ),
    (
        "unknown status",
        payload("twilio_status_unknown.form", sid=SID),
        True,
        204,
        ("sent", "teleported", None),
    ),
    (
        "unknown sid",
        payload("twilio_status_delivered.form", sid="SM" + "cd" * 16),
        True,
        204,
        ("sent", "queued", None),
    ),
    (
        "missing MessageSid",
        with_fields(payload("twilio_status_delivered.form", sid=SID), MessageSid=None, SmsSid=None),
        True,
        400,
        ("sent", "queued", None),
    ),
    ("bad signature", payload("twilio_status_delivered.form", sid=SID), False, 403, ("sent", "queued", None)),
    (
        "non-UTF-8",
        b"MessageSid=" + SID.encode() + b"&MessageStatus=deliv%E9red",
        True,
        400,
        ("sent", "queued", None),
    ),
    (
        "oversized",
        with_fields(payload("twilio_status_delivered.form", sid=SID), Pad="x" * 40_000),
        True,
        413,
        ("sent", "queued", None),
    ),
]


@pytest.mark.parametrize(
    ("name", "body", "signed", "status", "row"), STATUS_CASES, ids=[c[0] for c in STATUS_CASES]
)
def test_status_callback_table(
    make_client: Callable[..., TestClient],
    name: str,
    body: bytes,
    signed: bool,
    status: int,
    row: tuple[str, str | None, str | None],
) -> None:
    client = make_client(twilio_auth_token=AUTH_TOKEN)
    row_id = _queued_sms(client, SID)
    headers = sign("/sms/twilio/status", body) if signed else {**FORM, "X-Twilio-Signature": "bad"}
    response = client.post("/sms/twilio/status", content=body, headers=headers)
    assert response.status_code == status, response.text
    assert _row(client, row_id) == row
