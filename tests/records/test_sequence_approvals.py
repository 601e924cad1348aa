"""Issue 13, Lê Văn Cường: dose 1 approved from a USSD report, then a "booster" report from
Telegram whose approval form proposed dose 3 — approved with no warning, and his QR said 3/3.

Through the real routes: the form now proposes the next number on record, an approval that
leaves a gap answers 409 (API) or a confirmation step (console) and writes nothing; with an
override reason it is recorded, audited and shown on the report, and the certificate, the
verification answer and the status agree on what the record proves."""

from __future__ import annotations

import re
from datetime import date

import cbor2
from sqlalchemy import select

from certificates import hcert
from registry_client.embedded.tables import AuditRow
from registry_client.models import CaseKind, ClaimedDose, DosesConcerned
from tests.console.conftest import CUONG, Console, csrf_of, file_case


def _dose(number: int, when: str, vaccine: str = "Pfizer", site: str = "HN001") -> dict:
    return {
        "dose_number": number,
        "vaccine": vaccine,
        "lot": "FK1",
        "administered_on": when,
        "site_code": site,
    }


def _resolve(console: Console, ref: str, body: dict, user: str = "quan") -> object:
    return console.client.post(f"/api/corrections/{ref}/resolve", json=body, headers=console.bearer(user))


def _audit_lines(console: Console, action: str) -> list[str]:
    async def read() -> list[str]:
        async with console.state.db_sessions() as session:
            rows = await session.scalars(select(AuditRow).where(AuditRow.action == action))
            return [r.detail or "" for r in rows]

    return console.call(read)


def _cuong_reports(console: Console) -> tuple[str, str]:
    first = file_case(
        console,
        CUONG,
        channel="ussd",
        kind=CaseKind.MISSING_DOSE,
        doses_concerned=DosesConcerned.FIRST,
        claimed=ClaimedDose(date(2021, 8, 2), "Pfizer", "HN001", "FK1"),
    )
    approved = _resolve(
        console, first.ref, {"decision": "approved", "note": "", "dose": _dose(1, "2021-08-02")}
    )
    assert approved.status_code == 200, approved.text
    booster = file_case(
        console,
        CUONG,
        channel="telegram",
        kind=CaseKind.MISSING_DOSE,
        doses_concerned=DosesConcerned.BOOSTER,
        claimed=ClaimedDose(date(2022, 3, 1), "Pfizer", "HN001", "FK2"),
    )
    return first.ref, booster.ref


def test_a_gap_needs_an_override_through_the_api_and_then_every_reader_agrees(console: Console) -> None:
    _, ref = _cuong_reports(console)
    person_id = console.people[CUONG]
    registry = console.state.registry

    # the approval form proposes the next number on record, not 3
    console.as_user("quan")
    page = console.client.get(f"/agent/cases/{ref}")
    assert re.search(r'id="dose_number"[^>]*value="2"', page.text), "the form should propose dose 2"

    gap = _dose(3, "2022-03-01")
    refused = _resolve(console, ref, {"decision": "approved", "note": "booster", "dose": gap})
    assert refused.status_code == 409
    answer = refused.json()
    assert answer["detail"] == "dose_sequence"
    assert [(p["kind"], p["dose_number"], p["detail"]) for p in answer["problems"]] == [("gap", 3, [2])]
    assert "override" in answer["override"]
    assert [d.dose_number for d in console.call(registry.list_doses, person_id)] == [1]  # nothing written
    assert console.call(registry.get_correction, ref).is_open

    short = _resolve(console, ref, {"decision": "approved", "note": "", "dose": gap, "override": "ok"})
    assert short.status_code == 422 and short.json() == {"detail": "override_reason_short"}

    reason = "site log shows a booster; dose 2 was given abroad, paper card seen"
    done = _resolve(
        console, ref, {"decision": "approved", "note": "booster", "dose": gap, "override": reason}
    )
    assert done.status_code == 200, done.text
    assert [d.dose_number for d in console.call(registry.list_doses, person_id)] == [1, 3]
    case = console.call(registry.get_correction, ref)
    assert "Sequence override (dose 3 leaves a gap: dose 2 not on record)" in (case.resolution_note or "")
    [line] = _audit_lines(console, "dose.sequence_override")
    assert ref in line and reason in line and "dose 2 not on record" in line
    shown = console.client.get(f"/agent/cases/{ref}").text
    assert "Sequence override" in shown and "paper card seen" in shown

    # the certificate says what was given: two doses, the second of a two-dose series — never 3/3
    person = console.call(registry.get_person, person_id)
    doses = console.call(registry.list_doses, person_id)
    issued = console.call(console.state.certificates.issue, person, doses)
    claims = cbor2.loads(hcert.decode_hc1(issued.hc1).cose.payload)
    entry = claims[-260][1]["v"][0]
    assert (entry["dn"], entry["sd"], entry["dt"]) == (2, 2, "2022-03-01")
    verified = console.client.post("/api/verify", json={"hc1": issued.hc1}).json()
    assert verified["valid"] is True
    assert [(v["dose_number"], v["total_doses"]) for v in verified["vaccinations"]] == [(2, 2)]
    assert issued.missing_doses == (2,)


def test_the_console_asks_for_confirmation_and_keeps_the_reason(console: Console) -> None:
    _, ref = _cuong_reports(console)
    registry = console.state.registry
    console.as_user("quan")
    form = {
        "record_dose": "yes",
        "dose_number": "3",
        "vaccine": "EU/1/20/1528",
        "lot": "FK2",
        "administered_on": "2022-03-01",
        "site_code": "HN001",
        "note": "booster",
    }
    step = console.post(f"/agent/cases/{ref}/approve", form)
    assert step.status_code == 409
    assert "dose 2 not on record" in step.text or "mũi 2" in step.text
    assert 'name="override"' in step.text and 'name="dose_number" value="3"' in step.text
    assert [d.dose_number for d in console.call(registry.list_doses, console.people[CUONG])] == [1]

    confirmed = console.client.post(
        f"/agent/cases/{ref}/approve",
        data={**form, "override": "paper card seen, dose 2 abroad", "csrf_token": csrf_of(step.text)},
        follow_redirects=False,
    )
    assert confirmed.status_code == 303
    assert [d.dose_number for d in console.call(registry.list_doses, console.people[CUONG])] == [1, 3]
    assert "paper card seen" in (console.call(registry.get_correction, ref).resolution_note or "")
    assert len(_audit_lines(console, "dose.sequence_override")) == 1


def test_an_approval_in_sequence_needs_no_override(console: Console) -> None:
    _, ref = _cuong_reports(console)
    done = _resolve(console, ref, {"decision": "approved", "note": "", "dose": _dose(2, "2022-03-01")})
    assert done.status_code == 200, done.text
    assert _audit_lines(console, "dose.sequence_override") == []


def test_a_date_before_the_previous_dose_needs_an_override(console: Console) -> None:
    _, ref = _cuong_reports(console)
    early = _resolve(console, ref, {"decision": "approved", "note": "", "dose": _dose(2, "2021-07-01")})
    assert early.status_code == 409
    assert [p["kind"] for p in early.json()["problems"]] == ["out_of_order"]
