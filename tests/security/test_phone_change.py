"""A binding ends with the phone; messages go only to the registered phone (issue 12, part C).

The attacks, each played through the real routes of a running service (Twilio SMS webhook, USSD,
Telegram webhook, the agents' JSON API):

- after a hotline agent recorded a new phone, the OLD phone still read the person's doses by SMS,
  USSD and Telegram for the rest of the binding's 30 days, and neither number was told;
- outcomes of a report filed from the old number, with a fresh certificate link, still went to it;
- an agent alone could make any typed number the registered phone, and a report filed for a
  caller "with another contact number" sent the certificate link to that typed number.

Now a phone change takes effect only when the caller reads back a code sent to the new phone; it
ends every binding the old phone proved, on every channel and every worker (Redis hot state
included), tells both numbers, and the honest new phone logs in and reads the doses.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from bot.simulated_updates import SimulatedUser
from conversations.tables import ChannelBindingRow, OtpChallengeRow, PhoneChangeRow
from registry_client.embedded.tables import AuditRow
from registry_client.models import CaseKind, ClaimedDose, ContactChange, NewCorrection
from tests.conversations.conftest import demo_template  # noqa: F401 - shared session fixture
from tests.fakes.telegram_api import TelegramApiStandIn
from tests.faults.conftest import demo_db, pg_demo  # noqa: F401 - shared fixtures
from tests.faults.service import AN, Service, base_settings, expected, flat, running
from web.console.hotline import ReportForm, file_report
from web.console.users import ConsoleUser

OLD_PHONE, AN_ID, AN_DOB = AN
AN_NAME = "Nguyen Van An"
NEW_PHONE = "+84977000111"
TYPED = "+84966555444"  # a number a caller dictates to an agent
PASSWORD = "correct horse 42"
BOT_TOKEN = "7000000001:AAHk3dVaxChannelPhoneChangeTokenQ9x"
REDIS_URL = "redis://127.0.0.1:6379/0"


# -- helpers --------------------------------------------------------------------------------------
async def create_user(svc: Service, name: str, role: str, site: str | None = None) -> ConsoleUser:
    user: ConsoleUser = await svc.state.console.users.create(name, role, site, PASSWORD, "test")
    return user


async def agent_headers(
    svc: Service, name: str = "lan", role: str = "agent", site: str | None = None
) -> dict[str, str]:
    await create_user(svc, name, role, site)
    answer = await svc.client.post("/api/agent/token", json={"username": name, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['token']}"}


async def a_minute_later(svc: Service) -> None:
    """One-time codes may be sent to a person once a minute: let the last one be a minute old (the
    committed codes and the resend slot), as if the caller had waited."""
    person = await svc.state.registry.find_person(AN_ID, date(1985, 3, 14))
    async with svc.state.db_sessions() as db, db.begin():
        await db.execute(
            update(OtpChallengeRow)
            .where(OtpChallengeRow.person_id == person.id)
            .values(created_at=OtpChallengeRow.created_at - timedelta(seconds=61))
        )
    services = svc.state.conversations.services
    await services.counters.give_back(services.otp.resend_key(person.id))


async def sms_login(svc: Service, phone: str, code_phone: str) -> str:
    caller = svc.sms(phone)
    await caller.send(f"DK {AN_ID} {AN_DOB}")
    return flat(await caller.send(await svc.last_code(code_phone)))


async def request_change(svc: Service, headers: dict[str, str], new_phone: str = NEW_PHONE) -> str:
    answer = await svc.client.post(
        "/api/agent/phone-change",
        json={"national_id": AN_ID, "date_of_birth": "1985-03-14", "new_phone": new_phone},
        headers=headers,
    )
    assert answer.status_code == 202, answer.text
    return str(answer.json()["change_id"])


async def confirm(svc: Service, headers: dict[str, str], change_id: str, code: str) -> Any:
    return await svc.client.post(
        f"/api/agent/phone-change/{change_id}/confirm", json={"code": code}, headers=headers
    )


async def change_phone(svc: Service, headers: dict[str, str], new_phone: str = NEW_PHONE) -> dict[str, Any]:
    change_id = await request_change(svc, headers, new_phone)
    done = await confirm(svc, headers, change_id, await svc.last_code(new_phone))
    assert done.status_code == 200, done.text
    return dict(done.json())


async def bindings_of(svc: Service, address: str) -> list[tuple[str, str]]:
    async with svc.state.db_sessions() as db:
        rows = await db.execute(
            select(ChannelBindingRow.channel, ChannelBindingRow.person_id).where(
                ChannelBindingRow.address == address
            )
        )
        return [(r.channel, r.person_id) for r in rows]


def templates(rows: list[Any]) -> list[str]:
    return [r.template for r in rows]


def asks_to_log_in(reply: str) -> bool:
    return AN_NAME not in reply and expected("login.ask_id") in reply


# -- SMS, both databases --------------------------------------------------------------------------
@pytest.fixture(params=["demo_db", "pg_demo"])
def any_demo_db(request: pytest.FixtureRequest) -> str:
    """The demo identities on SQLite, then on PostgreSQL."""
    return str(request.getfixturevalue(request.param))


async def test_the_old_phone_loses_the_record_at_once_and_the_new_phone_gains_it(
    any_demo_db: str, tmp_path: Path
) -> None:
    url = any_demo_db
    async with running(base_settings(url, tmp_path / "data")) as svc:
        headers = await agent_headers(svc)
        old = svc.sms(OLD_PHONE)
        assert AN_NAME in await sms_login(svc, OLD_PHONE, OLD_PHONE)
        assert AN_NAME in flat(await old.send("MUI"))  # the old phone reads the doses

        result = await change_phone(svc, headers)
        assert result["status"] == "confirmed" and result["bindings_ended"] >= 1
        assert result["registered_phone"] == "09******11" and result["retired"] == ["09******67"]

        after = flat(await old.send("MUI"))  # the same request that used to return the doses
        assert asks_to_log_in(after), after
        assert await bindings_of(svc, OLD_PHONE) == []

        # both numbers were told, through the outbox
        assert templates(await svc.outbox_to(OLD_PHONE, "notification")) == ["sms.phone_removed"]
        assert templates(await svc.outbox_to(NEW_PHONE, "notification")) == ["sms.phone_added"]

        # the honest new phone logs in and reads its doses
        await a_minute_later(svc)
        assert AN_NAME in await sms_login(svc, NEW_PHONE, NEW_PHONE)
        assert AN_NAME in flat(await svc.sms(NEW_PHONE).send("MUI"))
        # the old phone cannot log in again: a code would only go to the new phone
        await a_minute_later(svc)
        await old.send(f"DK {AN_ID} {AN_DOB}")
        assert [m.kind for m in await svc.outbox_to(OLD_PHONE, "otp")] == ["otp"]  # only the first login's
        assert AN_NAME not in flat(await old.send("MUI"))


async def test_a_change_made_in_the_registry_itself_ends_the_old_phones_access(
    demo_db: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    """An import or the registry's own staff change the phone: no one told us, yet the binding
    the old phone holds is refused before any data is shown (and ended)."""
    async with running(base_settings(demo_db, tmp_path / "data")) as svc:
        old = svc.sms(OLD_PHONE)
        await sms_login(svc, OLD_PHONE, OLD_PHONE)
        person = await svc.state.registry.find_person(AN_ID, date(1985, 3, 14))
        await svc.state.registry.update_contact(
            person.id, ContactChange(NEW_PHONE, OLD_PHONE, evidence="registry staff", actor="registry")
        )
        after = flat(await old.send("MUI"))
        assert AN_NAME not in after and expected("login.binding_ended") in after
        assert await bindings_of(svc, OLD_PHONE) == []


async def test_dx_and_logout_end_every_binding_of_the_phone(
    demo_db: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    async with running(base_settings(demo_db, tmp_path / "data")) as svc:
        old = svc.sms(OLD_PHONE)
        await sms_login(svc, OLD_PHONE, OLD_PHONE)
        await a_minute_later(svc)
        ussd = svc.ussd(OLD_PHONE)
        await ussd.dial()
        await ussd.answers("1", AN_ID, AN_DOB)
        assert AN_NAME in await ussd.whole(await ussd.send(await svc.last_code(OLD_PHONE)))
        assert sorted(c for c, _ in await bindings_of(svc, OLD_PHONE)) == ["sms", "ussd"]
        reply = flat(await old.send("dx"))
        assert reply == expected("logout.done_sms")
        assert await bindings_of(svc, OLD_PHONE) == []  # SMS and USSD alike
        assert asks_to_log_in(flat(await old.send("MUI")))
        await ussd.dial()
        assert expected("login.ask_id") in flat(await ussd.send("1"))
        await a_minute_later(svc)
        await sms_login(svc, OLD_PHONE, OLD_PHONE)
        assert flat(await old.send("LOGOUT")) == expected("logout.done_sms")  # the session's language
        assert "LOGOUT" in flat(await old.send("HELP")) and "DX" in flat(await old.send("HD"))


# -- Telegram -------------------------------------------------------------------------------------
async def test_a_telegram_chat_bound_by_a_code_to_the_old_phone_ends_too(
    demo_db: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    with TelegramApiStandIn() as telegram:
        settings = base_settings(
            demo_db,
            tmp_path / "data",
            telegram_bot_token=BOT_TOKEN,
            telegram_api_base=telegram.base_url,
            telegram_webhook_secret="phone-change-secret",
        )
        async with running(settings) as svc:
            hook = {"X-Telegram-Bot-Api-Secret-Token": "phone-change-secret"}
            user = SimulatedUser("+84911999888")  # a chat of its own; the code goes to the registered phone

            async def say(text: str) -> str:
                before = len(telegram.calls_of("sendMessage")) + len(telegram.calls_of("sendPhoto"))
                answer = await svc.client.post("/telegram/webhook", json=user.text(text), headers=hook)
                assert answer.status_code == 200, answer.text
                calls = telegram.calls_of("sendMessage") + telegram.calls_of("sendPhoto")
                assert len(calls) > before
                return " ".join(
                    str(c.params.get("text") or c.params.get("caption") or "") for c in calls[before:]
                )

            await say("/status")
            await say(AN_ID)
            await say(AN_DOB)
            await say(await svc.last_code(OLD_PHONE))
            assert "Nguyễn Văn An" in await say("/status")
            chat = str(user.chat["id"])
            assert [c for c, _ in await bindings_of(svc, chat)] == ["telegram"]

            headers = await agent_headers(svc)
            await change_phone(svc, headers)
            assert await bindings_of(svc, chat) == []
            after = await say("/status")
            assert "Nguyễn Văn An" not in after
            # and a certificate link asked by the console for Telegram finds no chat to go to
            person = await svc.state.registry.find_person(AN_ID, date(1985, 3, 14))
            assert await svc.state.console.citizen.telegram_chats(person.id, person.registered_phone) == []


# -- second worker, Redis hot state ----------------------------------------------------------------
async def test_a_second_worker_with_redis_hot_state_refuses_the_old_phone(
    demo_db: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    redis = {"redis_url": REDIS_URL, "redis_key_prefix": f"vaxtest-{uuid.uuid4().hex[:8]}"}
    settings = base_settings(demo_db, tmp_path / "data", **redis)
    async with running(settings) as worker_a, running(settings) as worker_b:
        ussd = worker_a.ussd(OLD_PHONE)
        await ussd.dial()
        await ussd.answers("1", AN_ID, AN_DOB)
        await ussd.send(await worker_a.last_code(OLD_PHONE))
        await ussd.dial()
        assert AN_NAME in await ussd.whole(await ussd.send("1"))  # bindings now cached in Redis

        headers = await agent_headers(worker_b)
        await change_phone(worker_b, headers)  # on the other worker

        await ussd.dial()
        screen = await ussd.send("1")
        assert AN_NAME not in screen and expected("login.ask_id") in flat(screen)
        # the new phone, on worker A, logs in and reads the doses
        await a_minute_later(worker_a)
        fresh = worker_a.ussd(NEW_PHONE)
        await fresh.dial()
        await fresh.answers("1", AN_ID, AN_DOB)
        assert AN_NAME in await fresh.whole(await fresh.send(await worker_a.last_code(NEW_PHONE)))


# -- outcomes and links -----------------------------------------------------------------------------
async def test_the_outcome_of_a_report_filed_from_the_old_number_goes_to_the_new_phone(
    demo_db: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    async with running(base_settings(demo_db, tmp_path / "data")) as svc:
        await sms_login(svc, OLD_PHONE, OLD_PHONE)
        person = await svc.state.registry.find_person(AN_ID, date(1985, 3, 14))
        case = await svc.state.registry.submit_correction(  # as the SMS report flow files it
            NewCorrection(
                kind=CaseKind.WRONG_PERSONAL_DATA,
                doses_concerned=None,
                claimed=ClaimedDose(site="HN001"),
                channel="sms",
                channel_address=OLD_PHONE,
                person_id=person.id,
                contact_phone=OLD_PHONE,
                description="my name is misspelt",
            )
        )
        await change_phone(svc, await agent_headers(svc))
        site = await agent_headers(svc, "hoa", "site", case.site_code or "HN001")
        if case.site_code is None:
            site = await agent_headers(svc, "quan", "admin")
        resolved = await svc.client.post(
            f"/api/corrections/{case.ref}/resolve",
            json={"decision": "approved", "note": "name corrected"},
            headers=site,
        )
        assert resolved.status_code == 200, resolved.text
        assert resolved.json()["citizen_told"] is True
        # nothing about the report reaches the old number: only the notice of its removal
        assert templates(await svc.outbox_to(OLD_PHONE, "notification")) == ["sms.phone_removed"]
        [outcome] = [m for m in await svc.outbox_to(NEW_PHONE) if m.template.startswith("sms.case_")]
        assert outcome.template == "sms.case_approved_link" and "/c/" in outcome.params["link"]
        # the old number cannot even pull the outcome with KQ <ref>
        reply = flat(await svc.sms(OLD_PHONE).send(f"KQ {case.ref}"))
        assert reply == expected("check.not_found", ref=case.ref)


async def test_no_link_ever_goes_to_a_number_an_agent_types(
    demo_db: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    async with running(base_settings(demo_db, tmp_path / "data")) as svc:
        headers = await agent_headers(svc)
        # 1. a phone change the caller never confirms changes nothing
        change_id = await request_change(svc, headers, TYPED)
        person = await svc.state.registry.find_person(AN_ID, date(1985, 3, 14))
        assert person.registered_phone == OLD_PHONE
        sent = await svc.client.post(
            "/api/agent/send-link",
            json={"national_id": AN_ID, "date_of_birth": "1985-03-14", "channel": "sms", "phone": TYPED},
            headers=headers,
        )
        assert sent.status_code == 202 and sent.json()["sent_to"] == "09******67"
        # 2. a report filed for a caller "with another contact number": the outcome is not sent there
        agent = await create_user(svc, "mai", "agent")
        form = ReportForm("wrong_personal_data", "", "", "", "HN001", "", "wrong name", "other", TYPED)
        case = await file_report(svc.state.console, agent, person.id, form)
        assert case.contact_phone == TYPED  # kept for staff to call back
        admin = await agent_headers(svc, "quan", "admin")
        resolved = await svc.client.post(
            f"/api/corrections/{case.ref}/resolve",
            json={"decision": "approved", "note": "fixed"},
            headers=admin,
        )
        assert resolved.status_code == 200 and resolved.json()["citizen_told"] is True
        outcome = [m for m in await svc.outbox_to(OLD_PHONE) if m.template == "sms.case_approved_link"]
        assert len(outcome) == 1
        # the typed number got exactly one message: the change code, which opens nothing
        to_typed = await svc.outbox_to(TYPED)
        assert templates(to_typed) == ["sms.phone_change_code"]
        assert not any("/c/" in str(m.params) for m in to_typed)
        # 3. guessing the code read back: counted before compared, then the change is dead
        code = await svc.last_code(TYPED)
        wrong = "000000" if code != "000000" else "111111"
        answers = await asyncio.gather(*(confirm(svc, headers, change_id, wrong) for _ in range(12)))
        assert [a.status_code for a in answers] == [400] * 12
        late = await confirm(svc, headers, change_id, code)
        assert late.status_code == 400 and late.json()["detail"] == "change_dead"
        async with svc.state.db_sessions() as db:
            row = await db.get(PhoneChangeRow, change_id)
            assert row is not None and row.attempts == 5 and row.status == "dead"  # 5 comparisons, no more
            assert code not in (row.code_hash, row.id, row.new_phone)  # the code is kept hashed only
            actions = (
                await db.scalars(select(AuditRow.action).where(AuditRow.action.like("contact.%")))
            ).all()
        assert "contact.change_requested" in actions and actions.count("contact.change_code") == 13
        assert "contact.change" not in actions
        assert (await svc.state.registry.get_person(person.id)).registered_phone == OLD_PHONE
