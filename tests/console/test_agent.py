"""The hotline agent: search, masked data, send link (registry phone only), report for a caller,
phone change confirmed by a code from the new phone, audit with the agent's name; hostile search input."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from outbox.tables import OutboxRow
from registry_client.embedded.tables import AuditRow
from registry_client.models import CaseStatus, CorrectionQuery
from tests.console.conftest import AN, BINH, CUONG, Console


def outbox_rows(console: Console) -> list[OutboxRow]:
    """The local outbox as the simulated phone reads it (links opened from their seal)."""

    async def rows() -> list[OutboxRow]:
        async with console.state.db_sessions() as session:
            stored = (await session.scalars(select(OutboxRow).order_by(OutboxRow.id))).all()
            return [console.state.outbox.open(row) for row in stored]

    return console.call(rows)


def audit_rows(console: Console, action: str) -> list[AuditRow]:
    async def rows() -> list[AuditRow]:
        async with console.state.db_sessions() as session:
            return list((await session.scalars(select(AuditRow).where(AuditRow.action == action))).all())

    return console.call(rows)


def test_search_by_national_id_and_date_of_birth_opens_the_person(console: Console) -> None:
    console.as_user("lan")
    page = console.client.get("/agent/search", params={"national_id": "001 085 012 345", "dob": "14/03/1985"})
    handle = console.handle(console.people[AN])
    assert page.status_code == 200 and str(page.url).endswith(f"/agent/persons/{handle}")
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
        f"/agent/persons/{console.handle(person)}/send-link",
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
    response = console.post(
        f"/agent/persons/{console.handle(person)}/send-link", {"channel": "telegram"}
    )
    page = console.client.get(response.headers["location"])
    assert "chưa liên kết Telegram" in page.text
    assert outbox_rows(console) == []
    console.call(console.state.conversations.bindings.bind, "telegram", "777001", person)
    console.post(f"/agent/persons/{console.handle(person)}/send-link", {"channel": "telegram"})
    [row] = outbox_rows(console)
    assert (row.channel, row.address, row.template) == ("telegram", "777001", "sms.cert_link")


def test_person_without_doses_has_no_link_to_send(console: Console) -> None:
    console.as_user("lan")
    page = console.client.get(f"/agent/persons/{console.handle(console.people[CUONG])}")
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
    response = console.post(f"/agent/persons/{console.handle(person)}/report", report_form())
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
    bad = console.post(
        f"/agent/persons/{console.handle(person)}/report", report_form(contact="other", other_phone="12")
    )
    assert "Số điện thoại không hợp lệ" in console.client.get(bad.headers["location"]).text
    console.post(
        f"/agent/persons/{console.handle(person)}/report",
        report_form(contact="other", other_phone="0912 000 111", site=""),
    )
    [case] = console.call(console.state.registry.list_corrections, CorrectionQuery(person_id=person))
    assert case.contact_phone == "+84912000111" and case.site_code is None  # no dose: hotline queue


def test_phone_change_takes_effect_only_when_the_code_from_the_new_phone_is_read_back(console: Console) -> None:
    """The contract changed (issue 12): an agent alone can no longer make a typed number the
    registered phone; a code sent to the new number must be read back first."""
    console.as_user("lan")
    person = console.people[BINH]
    before = console.call(console.state.registry.list_doses, person)
    bad = console.post(f"/agent/persons/{console.handle(person)}/phone", {"new_phone": "12"})
    assert "Số điện thoại không hợp lệ" in console.client.get(bad.headers["location"]).text
    asked = console.post(
        f"/agent/persons/{console.handle(person)}/phone", {"new_phone": "0977 123 456"}
    )
    assert "?change=" in asked.headers["location"]
    page = console.client.get(asked.headers["location"])
    assert "Đã gửi mã tới số mới" in page.text and "09******56" in page.text
    unchanged = console.call(console.state.registry.get_person, person)
    assert unchanged.registered_phone == "+84912345678"  # nothing changes on the agent's word
    [sent] = console.call(console.state.outbox.messages_to, "sms", "+84977123456")
    code = str(sent.params["code"])
    change_id = asked.headers["location"].split("change=")[1].split("#")[0]
    confirm = f"/agent/persons/{console.handle(person)}/phone/{change_id}/confirm"
    wrong = console.post(confirm, {"code": "000000" if code != "000000" else "111111"})
    assert "Mã sai. Còn 4 lần thử." in console.client.get(wrong.headers["location"]).text
    assert console.call(console.state.registry.get_person, person).registered_phone == "+84912345678"
    done = console.post(confirm, {"code": code})
    assert "Đã đổi số đăng ký" in console.client.get(done.headers["location"]).text
    updated = console.call(console.state.registry.get_person, person)
    assert updated.registered_phone == "+84977123456" and updated.current_phones == ("+84977123456",)
    old = next(c for c in updated.contacts if c.phone == "+84912345678")
    assert old.removed_at is not None  # kept, retired
    assert console.call(console.state.registry.list_doses, person) == before
    told_old = console.call(console.state.outbox.messages_to, "sms", "+84912345678")
    told_new = console.call(console.state.outbox.messages_to, "sms", "+84977123456")
    assert [m.template for m in told_old] == ["sms.phone_removed"]
    assert [m.template for m in told_new] == ["sms.phone_change_code", "sms.phone_added"]
    assert [a.actor for a in audit_rows(console, "contact.change_requested")] == ["agent:lan"]
    assert [a.actor for a in audit_rows(console, "contact.change_code")] == ["agent:lan"]
    [entry] = audit_rows(console, "contact.change")
    assert entry.actor == "agent:lan" and "09******56" in entry.detail and "0977123456" not in entry.detail
    assert "09******78" in entry.detail  # the retired number, masked
    again = console.post(confirm, {"code": code})  # a used change cannot be replayed into anything
    assert console.client.get(again.headers["location"]).status_code == 200


def test_english_switch(console: Console) -> None:
    console.as_user("lan")
    vi = console.client.get("/agent/search")
    assert 'lang="vi"' in vi.text and "Tìm người trong sổ tiêm chủng" in vi.text
    console.post("/agent/lang", {"lang": "en", "back": "/agent/search"})
    en = console.client.get("/agent/search")
    assert '<html lang="en">' in en.text and "Find a person in the registry" in en.text
