"""WhatsApp's 24-hour window through the real routes: a WhatsApp user logs in on /sms/twilio, an
agent resolves their reports on /api/corrections/{ref}/resolve; inside the window the outcome goes
on WhatsApp, once it has closed by SMS to the registered phone — counted on /metrics and shown
to the hotline with the channel each message used."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from conversations.tables import ConversationSessionRow
from db.clock import utc_now
from outbox.tables import OutboxRow
from registry_client.models import CaseKind, ClaimedDose, DosesConcerned, NewCorrection
from tests.console.conftest import Console, cheap_argon2, start_console  # noqa: F401 (fixture)
from tests.sms_gateway.conftest import payload
from tests.sms_gateway.test_twilio_webhook import FORM, with_fields

AN = "+84901234567"
AN_ID = "001085012345"
TEXT = payload("twilio_whatsapp_text.form")


@pytest.fixture
def hub(sqlite_url: str, tmp_path: Path) -> Iterator[Console]:
    """The real app (hub users, demo people) without Twilio: WhatsApp from the local simulator."""
    yield from start_console(sqlite_url, tmp_path / "data")


def _say(hub: Console, text: str, sid: str) -> None:
    body = with_fields(TEXT, Body=text, MessageSid=sid, SmsSid=sid)
    token = hub.state.settings.resolved_gateway_token  # the quick start: no Twilio credentials
    response = hub.client.post("/sms/twilio", content=body, headers={**FORM, "X-Gateway-Token": token})
    assert response.status_code == 200, response.text


def _rows(hub: Console, channel: str, address: str) -> list[OutboxRow]:
    return list(hub.call(hub.state.outbox.messages_to, channel, address))


def _log_in_on_whatsapp(hub: Console) -> None:
    for i, text in enumerate(("1", AN_ID, "14031985")):
        _say(hub, text, f"SMlogin{i}")
    [otp] = [r for r in _rows(hub, "sms", AN) if r.kind == "otp"]
    _say(hub, str((otp.params or {})["code"]), "SMlogin-code")
    assert "Nguyễn Văn An" in (_rows(hub, "whatsapp", AN)[-1].text or "")


def _report(hub: Console) -> str:
    async def submit() -> str:
        registry = hub.state.registry
        person = await registry.find_person(AN_ID, date(1985, 3, 14))
        case = await registry.submit_correction(
            NewCorrection(
                kind=CaseKind.MISSING_DOSE,
                doses_concerned=DosesConcerned.FIRST,
                claimed=ClaimedDose(),
                channel="whatsapp",
                channel_address=AN,
                person_id=person.id,
            )
        )
        return str(case.ref)

    return str(hub.call(submit))


def _fallbacks(hub: Console) -> float:
    text = hub.client.get("/metrics").text
    found = re.search(r'^whatsapp_sms_fallback_total\{kind="report_outcome"\} (\S+)$', text, re.M)
    return float(found[1]) if found else 0.0


def _reject(hub: Console, ref: str, headers: dict[str, str]) -> Any:
    response = hub.client.post(
        f"/api/corrections/{ref}/resolve", json={"decision": "rejected", "note": "no record"}, headers=headers
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_outcomes_follow_whatsapps_window(hub: Console) -> None:
    _log_in_on_whatsapp(hub)
    agent = hub.bearer("quan")
    before = _fallbacks(hub)

    inside = _report(hub)
    _reject(hub, inside, agent)
    told = [r for r in _rows(hub, "whatsapp", AN) if r.kind == "notification"]
    assert [r.params and r.params["ref"] for r in told] == [inside]  # on WhatsApp: the user wrote today
    assert not [r for r in _rows(hub, "sms", AN) if r.kind == "notification"]
    assert _fallbacks(hub) == before

    async def a_day_passes() -> None:  # the user's last WhatsApp message is now 25 hours old
        async with hub.state.db_sessions() as db, db.begin():
            await db.execute(
                update(ConversationSessionRow)
                .where(ConversationSessionRow.channel == "whatsapp", ConversationSessionRow.address == AN)
                .values(updated_at=utc_now() - timedelta(hours=25))
            )

    hub.call(a_day_passes)
    outside = _report(hub)
    _reject(hub, outside, agent)
    by_sms = [r for r in _rows(hub, "sms", AN) if r.kind == "notification"]
    assert [r.params and r.params["ref"] for r in by_sms] == [outside]  # to the registered phone
    assert len([r for r in _rows(hub, "whatsapp", AN) if r.kind == "notification"]) == 1
    assert _fallbacks(hub) == before + 1

    # the hotline sees the channel of the report and of each message
    hub.as_user("lan")
    person_page = hub.client.get(f"/agent/persons/{hub.handle(hub.people[AN_ID])}").text
    assert "WHATSAPP · thông báo" in person_page and "SMS · thông báo" in person_page
    hub.as_user("quan")
    case_page = hub.client.get(f"/agent/cases/{outside}").text
    assert "qua WhatsApp" in case_page


def test_a_new_message_reopens_the_window(hub: Console) -> None:
    _log_in_on_whatsapp(hub)
    agent = hub.bearer("quan")

    async def long_ago() -> None:
        async with hub.state.db_sessions() as db, db.begin():
            await db.execute(
                update(ConversationSessionRow)
                .where(ConversationSessionRow.channel == "whatsapp")
                .values(updated_at=utc_now() - timedelta(days=3))
            )

    hub.call(long_ago)
    _say(hub, "HD", "SMhelp")  # the user writes again
    ref = _report(hub)
    _reject(hub, ref, agent)
    assert [r.params and r.params["ref"] for r in _rows(hub, "whatsapp", AN) if r.kind == "notification"] == [
        ref
    ]
