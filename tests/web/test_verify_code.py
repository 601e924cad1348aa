"""POST /api/verify-code and the /verify page's code tab, on the real app with the demo people and
console users: the hotline sends the code, a checkpoint checks it, a correction approval revokes
it and a new code is issued; malformed input, per-IP limits, code lockout, audit."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from conversations.outbound import make_renderer
from conversations.text import sms_segments
from outbox.tables import OutboxRow
from registry_client.embedded.tables import AuditRow
from tests.console.conftest import (  # noqa: F401 (cheap_argon2: a fixture)
    AN,
    BINH,
    CUONG,
    Console,
    cheap_argon2,
    demo_case_ref,
    start_console,
)
from tests.console.test_api import approve_body


@pytest.fixture
def cx(sqlite_url: str, tmp_path: Path) -> Iterator[Console]:
    """The real app with the demo people and console users (tests/console/conftest.py)."""
    yield from start_console(sqlite_url, tmp_path / "data")


CODE = re.compile(r"\b[2-9A-HJKMNP-Z]{4}-[2-9A-HJKMNP-Z]{4}-[2-9A-HJKMNP-Z]{4}\b")
NOTHING = {"name": "", "birth_year": None}


def outbox(cx: Console, kind: str) -> list[OutboxRow]:
    async def rows() -> list[OutboxRow]:
        async with cx.state.db_sessions() as session:
            query = select(OutboxRow).where(OutboxRow.kind == kind).order_by(OutboxRow.id)
            # as the simulated phone reads the local outbox: codes opened from their seal
            return [cx.state.outbox.open(row) for row in (await session.scalars(query)).all()]

    result: list[OutboxRow] = cx.call(rows)
    return result


def audits(cx: Console, action: str) -> list[AuditRow]:
    async def rows() -> list[AuditRow]:
        async with cx.state.db_sessions() as session:
            query = select(AuditRow).where(AuditRow.action == action).order_by(AuditRow.id)
            return list((await session.scalars(query)).all())

    result: list[AuditRow] = cx.call(rows)
    return result


def send_code(cx: Console, national_id: str) -> Any:
    return cx.post(f"/agent/persons/{cx.handle(cx.people[national_id])}/send-code")


def sms_text(row: OutboxRow) -> str:
    return make_renderer(strip_sms_diacritics=True, hotline="1900 9095")(row)


def check(cx: Console, code: str, year: object) -> Any:
    return cx.client.post("/api/verify-code", json={"code": code, "birth_year": year})


def test_hotline_code_checked_then_revoked_by_a_correction_and_reissued(cx: Console) -> None:
    cx.as_user("lan")
    sent = send_code(cx, BINH)
    assert sent.status_code == 303
    [row] = outbox(cx, "code")
    assert (row.channel, row.address, row.template) == ("sms", "+84912345678", "sms.cert_code")
    text = sms_text(row)
    [code] = set(CODE.findall(text))
    assert sms_segments(text) <= 2 and text.isascii()
    page = cx.client.get(sent.headers["location"])
    assert "09******78" in page.text  # the flash names the masked phone only

    valid = check(cx, code, 1990)
    assert valid.status_code == 200
    assert valid.json() == {
        "valid": True,
        "reason": "valid",
        "holder": {"name": "Trần T. Bình", "birth_year": 1990},
        "doses": 1,
        "latest_dose_date": "2021-09-10",
    }
    wrong = check(cx, code, 1991).json()
    assert wrong["valid"] is False and wrong["reason"].startswith("unknown")
    assert wrong["holder"] == NOTHING and wrong["doses"] == 0 and wrong["latest_dose_date"] == ""
    assert "Bình" not in str(wrong) and "Binh" not in str(wrong)

    typo = code[:-1] + ("2" if code[-1] != "2" else "3")
    mistyped = check(cx, typo, 1990).json()
    assert mistyped["reason"].startswith("check the code") and mistyped["holder"] == NOTHING

    # the site approves Bình's missing dose 2: the certificate is reissued, the old code is revoked
    minh = cx.bearer("minh")
    done = cx.client.post(f"/api/corrections/{demo_case_ref(cx)}/resolve", json=approve_body(), headers=minh)
    assert done.status_code == 200 and done.json()["certificate_reissued"] is True
    revoked = check(cx, code, 1990).json()
    assert revoked["valid"] is False and revoked["reason"].startswith("revoked")
    # she had used a code: the new one goes to her phone at once, after the approval message
    [told] = outbox(cx, "notification")
    first, renewed = outbox(cx, "code")
    assert renewed.id > told.id and renewed.address == "+84912345678"
    [new_code] = set(CODE.findall(sms_text(renewed)))
    assert new_code != code
    cx.as_user("lan")
    assert send_code(cx, BINH).status_code == 303  # asked again: the same (current) code
    assert set(CODE.findall(sms_text(outbox(cx, "code")[-1]))) == {new_code}
    assert check(cx, new_code.replace("-", "").lower(), "1990").json() == {
        "valid": True,
        "reason": "valid",
        "holder": {"name": "Trần T. Bình", "birth_year": 1990},
        "doses": 2,
        "latest_dose_date": "2021-10-08",
    }
    sent_audit = audits(cx, "certificate.code_sent")
    assert [a.actor.split(":")[0] for a in sent_audit] == ["agent", "console", "agent"]
    checks = audits(cx, "certificate.verify_code")
    assert len(checks) == 5  # every check, including the failed ones
    assert all(code.replace("-", "") not in (a.detail or "") for a in checks)
    assert checks[0].person_id == cx.people[BINH] and "valid" in (checks[0].detail or "")
    assert "wrong birth year" in (checks[1].detail or "")


def test_no_code_without_a_dose_or_a_phone(cx: Console) -> None:
    cx.as_user("lan")
    response = send_code(cx, CUONG)
    assert response.status_code == 303 and not outbox(cx, "code")
    assert "Chưa có mũi tiêm nào" in cx.client.get(response.headers["location"]).text
    page = cx.client.get(f"/agent/persons/{cx.handle(cx.people[AN])}")
    assert f'action="/agent/persons/{cx.handle(cx.people[AN])}/send-code"' in page.text


def test_malformed_requests(cx: Console) -> None:
    api = "/api/verify-code"
    cases: list[tuple[Any, int, str]] = [
        (b"not json", 400, "bad request: the body must be JSON"),
        (b"[1, 2]", 400, "bad request: the body must be a JSON object"),
        (b'{"birth_year": 1985}', 400, "bad request: code"),
        (b'{"code": 42, "birth_year": 1985}', 400, "bad request: code"),
        (b'{"code": "VX7K-3D9Q-MRT4"}', 400, "bad request: birth_year"),
        (b'{"code": "VX7K-3D9Q-MRT4", "birth_year": true}', 400, "bad request: birth_year"),
        (b'{"code": "VX7K-3D9Q-MRT4", "birth_year": 1850}', 400, "bad request: birth_year"),
        (b'{"code": "VX7K-3D9Q-MRT4", "birth_year": 2999}', 400, "bad request: birth_year"),
        (b'{"code": "VX7K-3D9Q-MRT4", "birth_year": "85"}', 400, "bad request: birth_year"),
        (b'{"code": "VX7K-3D9Q-MRT4", "birth_year": 1985.5}', 400, "bad request: birth_year"),
        (b'{"code": "x", "birth_year": 1985}', 200, "check the code"),
        (b'{"code": "OOOO-OOOO-OOOO", "birth_year": 1985}', 200, "check the code"),
        (b'{"code": "' + b"A" * 5000 + b'", "birth_year": 1985}', 413, "bad request: the body is too large"),
        (b"\xff\xfe", 400, "bad request: the body must be JSON"),
    ]
    for body, status, reason in cases:
        response = cx.client.post(api, content=body, headers={"content-type": "application/json"})
        assert response.status_code == status, (body[:40], response.text)
        data = response.json()
        assert data["valid"] is False and data["reason"].startswith(reason), (body[:40], data)
        assert set(data) == {"valid", "reason", "holder", "doses", "latest_dose_date"}
        assert data["holder"] == NOTHING
    assert not audits(cx, "certificate.verify_code")[2:]  # only the two mistyped codes were checks


def test_lockout_and_per_ip_limit(cx: Console) -> None:
    code = cx.call(
        cx.state.certificates.code_for,
        cx.call(cx.state.registry.get_person, cx.people[AN]),
        cx.call(cx.state.registry.list_doses, cx.people[AN]),
    )
    assert check(cx, code, 1985).json()["valid"] is True
    for year in range(1980, 1985):  # five wrong years lock the code
        assert check(cx, code, year).json()["reason"].startswith("unknown")
    locked = check(cx, code, 1985)
    assert locked.status_code == 429 and int(locked.headers["retry-after"]) > 0
    assert locked.json()["reason"].startswith("locked") and locked.json()["holder"] == NOTHING
    # this client has failed 5 times; 5 unknown codes more and it is blocked altogether
    from certificates.codes import generate_code

    for _ in range(5):
        assert check(cx, generate_code(), 1985).json()["reason"].startswith("unknown")
    blocked = check(cx, generate_code(), 1985)
    assert blocked.status_code == 429 and blocked.json()["reason"].startswith("too many attempts")
    assert int(blocked.headers["retry-after"]) > 0


def test_the_verify_page_code_tab(cx: Console) -> None:
    page = cx.client.get("/verify?lang=en")
    assert 'href="#code"' in page.text and 'action="/verify/code?lang=en#code"' in page.text
    code = cx.call(
        cx.state.certificates.code_for,
        cx.call(cx.state.registry.get_person, cx.people[AN]),
        cx.call(cx.state.registry.list_doses, cx.people[AN]),
    )
    ok = cx.client.post(
        "/verify/code?lang=en", data={"code": code.lower(), "birth_year": "1985", "lang": "en"}
    )
    assert (
        ok.status_code == 200 and "VALID" in ok.text and "Nguyễn V. An" in ok.text and "2022-03-10" in ok.text
    )
    vi = cx.client.post("/verify/code", data={"code": code, "birth_year": "1985"})
    assert "HỢP LỆ" in vi.text and "10/03/2022" in vi.text
    wrong = cx.client.post("/verify/code?lang=en", data={"code": code, "birth_year": "1986", "lang": "en"})
    assert (
        "NOT VALID" in wrong.text
        and "No certificate matches" in wrong.text
        and "Nguyễn V. An" not in wrong.text
    )
    typo = cx.client.post("/verify/code?lang=en", data={"code": "VX7K-3D9Q-MRTO", "birth_year": "1985"})
    assert "Check the code" in typo.text
    bad_year = cx.client.post("/verify/code?lang=en", data={"code": code, "birth_year": "abc"})
    assert "Not a valid year of birth" in bad_year.text
    assert len(audits(cx, "certificate.verify_code")) == 4  # the bad year was not a check
