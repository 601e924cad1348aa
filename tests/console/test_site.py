"""Site staff: the queue (oldest due first, SLA state, search and filters), approve (dose recorded,
certificate reissued and the old one revoked, citizen told with the fresh link), reject with a
reason, reassign, bulk approve, photos."""

from __future__ import annotations

from datetime import date, timedelta

from registry_client.clock import utc_now
from registry_client.models import CaseKind, CaseStatus, ClaimedDose, DosesConcerned, DoseSource
from tests.console.conftest import AN, BINH, CUONG, DUNG, PNG, Console, demo_case_ref, file_case
from tests.console.test_agent import outbox_rows


def test_queue_is_oldest_due_first_with_sla_states(console: Console) -> None:
    registry = console.state.registry.inner
    demo = demo_case_ref(console)
    today = utc_now().date()
    # two more HCM07 reports, created "earlier" so that they are overdue / due today
    for days_ago, national_id in ((30, DUNG), (0, AN)):
        registry._clock = lambda d=days_ago: utc_now() - timedelta(days=d)  # noqa: B023 - pinned per report
        file_case(console, national_id, site="HCM07", kind=CaseKind.OTHER, doses_concerned=None)
    registry._clock = utc_now
    console.as_user("minh")
    page = console.client.get("/agent/queue").text
    refs = [
        line.split("<strong>")[1].split("</strong>")[0] for line in page.split('<a href="/agent/cases/')[1:]
    ]
    cases = [console.call(console.state.registry.get_correction, r) for r in refs]
    assert [c.due_on for c in cases] == sorted(c.due_on for c in cases)
    assert demo in refs and len(refs) == 3
    assert "Quá hạn" in page and "Trong hạn" in page  # overdue and on time
    assert cases[0].due_on < today
    overdue_only = console.client.get("/agent/queue", params={"sla": "overdue"}).text
    assert overdue_only.count('<a href="/agent/cases/') == 1
    by_name = console.client.get("/agent/queue", params={"q": "bình"}).text
    assert demo in by_name and by_name.count('<a href="/agent/cases/') == 1
    by_kind = console.client.get("/agent/queue", params={"kind": "missing_dose"}).text
    assert by_kind.count('<a href="/agent/cases/') == 1
    hostile = console.client.get("/agent/queue", params={"q": "' OR 1=1 --", "sla": "<x>", "status": "drop"})
    assert hostile.status_code == 200 and "Không có phản ánh nào" in hostile.text


def test_approve_records_the_dose_reissues_the_certificate_and_tells_the_citizen(console: Console) -> None:
    ref = demo_case_ref(console)
    person_id = console.people[BINH]
    registry, certificates = console.state.registry, console.state.certificates
    person = console.call(registry.get_person, person_id)
    old = console.call(certificates.issue, person, console.call(registry.list_doses, person_id))
    console.as_user("minh")
    page = console.client.get(f"/agent/cases/{ref}").text
    assert "Vero Cell" in page and 'value="2021-10-08"' in page  # the form is prefilled from the claim
    assert console.call(registry.get_correction, ref).status == CaseStatus.ROUTED  # reading changes nothing
    assert console.post(f"/agent/cases/{ref}/start-review").status_code == 303
    assert console.call(registry.get_correction, ref).status == CaseStatus.IN_REVIEW
    response = console.post(
        f"/agent/cases/{ref}/approve",
        {
            "record_dose": "yes",
            "dose_number": "2",
            "vaccine": "BBIBP-CorV",
            "administered_on": "2021-10-08",
            "lot": "202110A",
            "site_code": "HCM07",
            "note": "found in the site's paper log",
        },
    )
    assert "người dân đã được báo" in console.client.get(response.headers["location"]).text
    case = console.call(registry.get_correction, ref)
    assert case.status == CaseStatus.APPROVED and case.resolution_note == "found in the site's paper log"
    dose = console.call(registry.list_doses, person_id)[1]
    assert (dose.dose_number, dose.source, dose.recorded_by, dose.lot) == (
        2,
        DoseSource.CORRECTION,
        "site:hcm07/minh",
        "202110A",
    )
    new = console.call(certificates.current_for_person, person_id)
    assert new.uvci != old.uvci and new.dose_count == 2
    assert console.call(certificates.find_by_uvci, old.uvci).revoked_at is not None
    verdict = console.client.post("/api/verify", json={"hc1": old.hc1}).json()
    assert verdict["valid"] is False
    [message] = [r for r in outbox_rows(console) if r.kind == "notification"]
    assert (message.channel, message.address, message.template) == (
        "sms",
        "+84912345678",
        "sms.case_approved_link",
    )
    assert message.params["ref"] == ref and message.params["link"].startswith("http://testserver/c/")
    # a second approval is refused, and nobody is told twice
    again = console.post(
        f"/agent/cases/{ref}/approve",
        {
            "record_dose": "yes",
            "dose_number": "2",
            "vaccine": "BBIBP-CorV",
            "administered_on": "2021-10-08",
            "site_code": "HCM07",
        },
    )
    assert "đã được xử lý xong" in console.client.get(again.headers["location"]).text
    assert len([r for r in outbox_rows(console) if r.kind == "notification"]) == 1


def test_reject_needs_a_reason_and_the_citizen_gets_it(console: Console) -> None:
    case = file_case(console, AN, site="HCM07", channel="telegram")
    console.as_user("minh")
    empty = console.post(f"/agent/cases/{case.ref}/reject", {"reason": " "})
    assert "Hãy ghi lý do" in console.client.get(empty.headers["location"]).text
    console.post(
        f"/agent/cases/{case.ref}/reject", {"reason": "No booster was given at this site on that day"}
    )
    closed = console.call(console.state.registry.get_correction, case.ref)
    assert closed.status == CaseStatus.REJECTED
    [message] = [r for r in outbox_rows(console) if r.kind == "notification"]
    assert (message.channel, message.address, message.template) == ("telegram", "555001", "sms.case_rejected")
    assert message.params["note"] == "No booster was given at this site on that day"


def test_reassign_to_another_site_and_to_the_hotline(console: Console) -> None:
    ref = demo_case_ref(console)
    console.as_user("minh")
    moved = console.post(
        f"/agent/cases/{ref}/reassign", {"target": "HN001", "note": "dose was given in Hà Nội"}
    )
    assert moved.headers["location"] == "/agent/queue"
    assert console.call(console.state.registry.get_correction, ref).site_code == "HN001"
    assert console.client.get(f"/agent/cases/{ref}").status_code == 403  # no longer minh's
    console.as_user("hoa")
    notes = console.client.get("/agent/notifications").text
    assert ref in notes and "HCM07 → HN001" in notes
    console.post(f"/agent/cases/{ref}/reassign", {"target": "hotline"})
    assert console.call(console.state.registry.get_correction, ref).site_code is None
    console.as_user("lan")
    assert ref in console.client.get("/agent/queue").text
    assert console.client.get(f"/agent/cases/{ref}").status_code == 200


def test_bulk_approve_only_the_reports_matching_the_batch(console: Console) -> None:
    batch_day = date(2022, 5, 10)
    match_an = file_case(console, AN, site="HN001")  # booster, Pfizer, 2022-05-10
    match_dung = file_case(console, DUNG, site="HN001", doses_concerned=DosesConcerned.BOOSTER)
    wrong_day = file_case(
        console,
        "001050005555",
        site="HN001",
        claimed=ClaimedDose(batch_day - timedelta(days=1), "Pfizer", "HN001", None),
        doses_concerned=DosesConcerned.SECOND,
        kind=CaseKind.WRONG_DOSE,
    )
    both = file_case(console, "001210004444", site="HN001", doses_concerned=DosesConcerned.BOTH)
    other_site = file_case(
        console, BINH, site="HCM07", kind=CaseKind.WRONG_DOSE, doses_concerned=DosesConcerned.FIRST
    )
    console.as_user("hoa")
    queue = console.client.get("/agent/queue").text
    assert 'name="refs"' in queue and "Duyệt hàng loạt" in queue
    body = {"vaccine": "EU/1/20/1528", "administered_on": batch_day.isoformat(), "lot": "FK7777"}
    token = console.token()
    result = console.client.post(
        "/agent/bulk-approve",
        data={
            "csrf_token": token,
            **body,
            "refs": [match_an.ref, match_dung.ref, wrong_day.ref, both.ref, other_site.ref],
        },
    )
    assert result.status_code == 200
    assert "Đã duyệt 2 trên 5 phản ánh" in result.text
    status = {
        c.ref: console.call(console.state.registry.get_correction, c.ref).status
        for c in (match_an, match_dung, wrong_day, both)
    }
    assert status[match_an.ref] == status[match_dung.ref] == CaseStatus.APPROVED
    assert status[wrong_day.ref].is_open and status[both.ref].is_open
    assert console.call(console.state.registry.get_correction, other_site.ref).is_open
    booster = console.call(console.state.registry.list_doses, console.people[DUNG])[-1]
    assert (booster.dose_number, booster.product, booster.lot, booster.site_code) == (
        3,
        "EU/1/20/1528",
        "FK7777",
        "HN001",
    )
    assert (
        "khác đợt này" in result.text and "cần duyệt riêng" in result.text and "hàng đợi khác" in result.text
    )
    told = [r for r in outbox_rows(console) if r.kind == "notification"]
    assert sorted(r.params["ref"] for r in told) == sorted([match_an.ref, match_dung.ref])


def test_photos_upload_and_view(console: Console) -> None:
    case = file_case(console, CUONG, site="HCM07", kind=CaseKind.OTHER, doses_concerned=None)
    console.as_user("minh")
    bad = console.client.post(
        f"/agent/cases/{case.ref}/attachments",
        data={"csrf_token": console.token()},
        files={"photo": ("evil.html", b"<script>alert(1)</script>", "image/png")},
        follow_redirects=False,
    )
    assert "Chỉ nhận ảnh" in console.client.get(bad.headers["location"]).text
    console.client.post(
        f"/agent/cases/{case.ref}/attachments",
        data={"csrf_token": console.token()},
        files={"photo": ("the card.png", PNG, "image/png")},
    )
    [attachment] = console.call(console.state.registry.get_correction, case.ref).attachments
    page = console.client.get(f"/agent/cases/{case.ref}").text
    assert f'<img src="/agent/cases/{case.ref}/attachments/{attachment.id}"' in page
    photo = console.client.get(f"/agent/cases/{case.ref}/attachments/{attachment.id}")
    assert photo.content == PNG and photo.headers["content-type"] == "image/png"
    assert console.client.get(f"/agent/cases/{case.ref}/attachments/999999").status_code == 404


def test_a_stored_path_outside_data_dir_is_never_served(console: Console) -> None:
    from registry_client.models import NewAttachment

    case = file_case(console, CUONG, site="HCM07", kind=CaseKind.OTHER, doses_concerned=None)
    console.call(
        console.state.registry.add_attachment,
        case.ref,
        NewAttachment("passwd", "image/png", 10, "/etc/passwd"),
        "test",
    )
    console.call(
        console.state.registry.add_attachment,
        case.ref,
        NewAttachment("up", "image/png", 10, "../../../../etc/hostname"),
        "test",
    )
    console.as_user("minh")
    for attachment in console.call(console.state.registry.get_correction, case.ref).attachments:
        response = console.client.get(f"/agent/cases/{case.ref}/attachments/{attachment.id}")
        assert response.status_code == 404


def test_approval_is_not_possible_for_an_unknown_vaccine_or_a_future_date(console: Console) -> None:
    ref = demo_case_ref(console)
    console.as_user("minh")
    for field, value, message in (
        ("vaccine", "Sputnik-XYZ", "Vắc xin không có trong danh mục"),
        ("administered_on", (date.today() + timedelta(days=3)).isoformat(), "Ngày tiêm không hợp lệ"),
    ):
        form = {
            "record_dose": "yes",
            "dose_number": "2",
            "vaccine": "BBIBP-CorV",
            "administered_on": "2021-10-08",
            "site_code": "HCM07",
        }
        form = replace_field(form, field, value)
        response = console.post(f"/agent/cases/{ref}/approve", form)
        assert message in console.client.get(response.headers["location"]).text
    assert console.call(console.state.registry.get_correction, ref).is_open


def replace_field(form: dict[str, str], field: str, value: str) -> dict[str, str]:
    return {**form, field: value}
