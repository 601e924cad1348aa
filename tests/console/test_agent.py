"""The hotline agent: search, masked data, send link (registry phone only), report for a caller,
verified phone change, audit with the agent's name; hostile search input."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from outbox.tables import OutboxRow
from registry_client.embedded.tables import AuditRow
from registry_client.models import CaseStatus, CorrectionQuery
from tests.console.conftest import AN, BINH, CUONG, Console


def outbox_rows(console: Console) -> list[OutboxRow]:
    async def rows() -> list[OutboxRow]:
        async with console.state.db_sessions() as session:
            return list((await session.scalars(select(OutboxRow).order_by(OutboxRow.id))).all())

    return console.call(rows)


def audit_rows(console: Console, action: str) -> list[AuditRow]:
    async def rows() -> list[AuditRow]:
        async with console.state.db_sessions() as session:
            return list((await session.scalars(select(AuditRow).where(AuditRow.action == action))).all())

    return console.call(rows)


def test_search_by_national_id_and_date_of_birth_opens_the_person(console: Console) -> None:
    console.as_user("lan")
    page = console.client.get("/agent/search", params={"national_id": "001 085 012 345", "dob": "14/03/1985"})
    assert page.status_code == 200 and str(page.url).endswith(f"/agent/persons/{console.people[AN]}")
    html = page.text
    assert "Nguyễn Văn An" in html
    assert "001******345" in html and "001085012345" not in html  # masked national ID
    assert "09******67" in html and "0901234567" not in html and "+84901234567" not in html  # masked phone
    assert html.count("<tr><td>") >= 3  # three doses
    assert "Vaxzevria (AstraZeneca)" in html and "14/03/1985" in html
    assert [a.actor for a in audit_rows(console, "person.view")] == ["agent:lan"]
    assert [a.actor for a in audit_rows(console, "person.search")] == ["agent:lan"]


def test_search_by_a_shared_phone_lists_everyone_on_it(console: Console) -> None:
    console.as_user("lan")
    page = console.client.get("/agent/search", params={"phone": "0938 111 222"})
    assert page.status_code == 200
    for name in ("Phạm Thị Dung", "Phạm Minh Đức", "Phạm Văn Em"):
        assert name in page.text
    assert page.text.count('href="/agent/persons/') == 3


@pytest.mark.parametrize(
    "params",
    [
        {"national_id": "' OR '1'='1", "dob": "14/03/1985"},
        {"national_id": "001085012345' OR 1=1 --", "dob": "14/03/1985"},
        {"national_id": "001085012345", "dob": "1985-03-14'; DROP TABLE persons; --"},
        {"phone": "'; DROP TABLE contacts; --"},
        {"phone": "0938111222 OR 1=1"},
        {"national_id": "%", "dob": "%"},
    ],
)
def test_sql_injection_shaped_input_finds_nothing_and_breaks_nothing(
    console: Console, params: dict[str, str]
) -> None:
    console.as_user("lan")
    page = console.client.get("/agent/search", params=params)
    assert page.status_code == 200
    assert 'href="/agent/persons/' not in page.text
    assert "notice" in page.text  # a plain explanation, not an error page
    # the tables are intact
    assert (
        console.client.get("/agent/search", params={"phone": "0938111222"}).text.count(
            'href="/agent/persons/'
        )
        == 3
    )


def test_send_link_goes_to_the_registry_phone_only(console: Console) -> None:
    console.as_user("lan")
    person = console.people[AN]
    response = console.post(
        f"/agent/persons/{person}/send-link",
        {"channel": "sms", "phone": "+84999999999", "address": "+84999999999"},
    )
    assert response.status_code == 303
    page = console.client.get(response.headers["location"])
    assert "09******67" in page.text and ("Đã gửi đường dẫn chứng nhận" in page.text)
    [row] = outbox_rows(console)
    assert (row.channel, row.address, row.kind, row.template) == (
        "sms",
        "+84901234567",
        "link",
        "sms.cert_link",
    )
    assert row.params["link"].startswith("http://testserver/c/") and row.params["name"] == "Nguyễn Văn An"
    [entry] = audit_rows(console, "certificate.link_sent")
    assert entry.actor == "agent:lan" and entry.person_id == person and "09******67" in entry.detail
    # the link really opens the certificate page of that person
    certificate = console.client.get(row.params["link"].removeprefix("http://testserver"))
    assert certificate.status_code == 200 and "Nguy" in certificate.text


def test_send_link_over_telegram_needs_a_bound_chat(console: Console) -> None:
    console.as_user("lan")
    person = console.people[AN]
    response = console.post(f"/agent/persons/{person}/send-link", {"channel": "telegram"})
    page = console.client.get(response.headers["location"])
    assert "chưa liên kết Telegram" in page.text
    assert outbox_rows(console) == []
    console.call(console.state.conversations.bindings.bind, "telegram", "777001", person)
    console.post(f"/agent/persons/{person}/send-link", {"channel": "telegram"})
    [row] = outbox_rows(console)
    assert (row.channel, row.address, row.template) == ("telegram", "777001", "sms.cert_link")


def test_person_without_doses_has_no_link_to_send(console: Console) -> None:
    console.as_user("lan")
    page = console.client.get(f"/agent/persons/{console.people[CUONG]}")
    assert "Chưa có mũi tiêm nào trong sổ" in page.text
    assert page.text.count("disabled>") >= 2  # both send buttons


def report_form(**overrides: Any) -> dict[str, Any]:
    form = {
        "kind": "missing_dose",
        "doses_concerned": "booster",
        "claimed_date": "10/05/2022",
        "vaccine": "EU/1/20/1528",
        "site": "HN002",
        "lot": "FK9",
        "description": "called the hotline",
        "contact": "registered",
        "language": "vi",
    }
    form.update(overrides)
    return form


def test_file_a_report_on_behalf_of_a_caller(console: Console) -> None:
    console.as_user("lan")
    person = console.people[AN]
    response = console.post(f"/agent/persons/{person}/report", report_form())
    page = console.client.get(response.headers["location"])
    cases = console.call(console.state.registry.list_corrections, CorrectionQuery(person_id=person))
    [case] = cases
    assert case.ref in page.text
    assert (case.channel, case.channel_address, case.contact_phone) == (
        "console",
        "+84901234567",
        "+84901234567",
    )
    assert case.site_code == "HN002" and case.status == CaseStatus.ROUTED
    assert any(e.actor == "agent:lan" for e in case.history)
    [entry] = audit_rows(console, "case.filed_for_caller")
    assert entry.actor == "agent:lan" and case.ref in entry.detail


def test_report_outcome_can_go_to_another_number_the_caller_gives(console: Console) -> None:
    console.as_user("lan")
    person = console.people[CUONG]
    bad = console.post(f"/agent/persons/{person}/report", report_form(contact="other", other_phone="12"))
    assert "Số điện thoại không hợp lệ" in console.client.get(bad.headers["location"]).text
    console.post(
        f"/agent/persons/{person}/report", report_form(contact="other", other_phone="0912 000 111", site="")
    )
    [case] = console.call(console.state.registry.list_corrections, CorrectionQuery(person_id=person))
    assert case.contact_phone == "+84912000111" and case.site_code is None  # no dose: hotline queue


def test_verified_phone_change_keeps_history_and_doses(console: Console) -> None:
    console.as_user("lan")
    person = console.people[BINH]
    before = console.call(console.state.registry.list_doses, person)
    missing = console.post(
        f"/agent/persons/{person}/phone", {"new_phone": "0977 123 456", "retire_phone": "0", "evidence": ""}
    )
    assert "Hãy ghi cách đã xác minh" in console.client.get(missing.headers["location"]).text
    response = console.post(
        f"/agent/persons/{person}/phone",
        {
            "new_phone": "0977 123 456",
            "retire_phone": "0",
            "evidence": "CCCD and date of birth checked on the call",
        },
    )
    page = console.client.get(response.headers["location"])
    assert "Đã ghi nhận số điện thoại mới" in page.text
    updated = console.call(console.state.registry.get_person, person)
    assert updated.registered_phone == "+84977123456" and updated.current_phones == ("+84977123456",)
    old = next(c for c in updated.contacts if c.phone == "+84912345678")
    assert old.removed_at is not None  # kept, retired
    assert console.call(console.state.registry.list_doses, person) == before
    [entry] = audit_rows(console, "contact.change")
    assert entry.actor == "agent:lan" and "09******56" in entry.detail and "0977123456" not in entry.detail
    # a number of someone else cannot be retired through this person
    stranger = console.post(
        f"/agent/persons/{person}/phone",
        {"new_phone": "0977 123 457", "retire_phone": "5", "evidence": "checked"},
    )
    assert "không thuộc người này" in console.client.get(stranger.headers["location"]).text


def test_english_switch(console: Console) -> None:
    console.as_user("lan")
    vi = console.client.get("/agent/search")
    assert 'lang="vi"' in vi.text and "Tìm người trong sổ tiêm chủng" in vi.text
    console.post("/agent/lang", {"lang": "en", "back": "/agent/search"})
    en = console.client.get("/agent/search")
    assert '<html lang="en">' in en.text and "Find a person in the registry" in en.text
