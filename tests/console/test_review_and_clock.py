"""Opening a report changes nothing; "start review" is an explicit POST. Days in the console (SLA
state, "a dose cannot be in the future") are days in Viet Nam by the console's clock, not the
machine's local date."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from registry_client.models import CaseStatus
from tests.console.conftest import Console, demo_case_ref

START = "/agent/cases/{ref}/start-review"


def status_of(console: Console, ref: str) -> CaseStatus:
    return console.call(console.state.registry.get_correction, ref).status  # type: ignore[no-any-return]


def test_opening_a_report_changes_nothing_and_start_review_is_a_post(console: Console) -> None:
    ref = demo_case_ref(console)
    assert status_of(console, ref) == CaseStatus.ROUTED
    console.as_user("minh")
    for _ in range(2):  # a prefetching browser, a refresh, a link preview: all reads
        page = console.client.get(f"/agent/cases/{ref}")
        assert page.status_code == 200
    assert status_of(console, ref) == CaseStatus.ROUTED
    assert f'action="{START.format(ref=ref)}"' in page.text and "Bắt đầu xem xét" in page.text

    assert console.client.get(START.format(ref=ref)).status_code == 405  # never by GET
    no_token = console.client.post(START.format(ref=ref), data={}, follow_redirects=False)
    assert no_token.status_code == 403 and status_of(console, ref) == CaseStatus.ROUTED

    started = console.post(START.format(ref=ref))
    assert started.status_code == 303 and started.headers["location"] == f"/agent/cases/{ref}"
    assert status_of(console, ref) == CaseStatus.IN_REVIEW
    page = console.client.get(started.headers["location"]).text
    assert f"Đã bắt đầu xem xét {ref}." in page
    assert f'action="{START.format(ref=ref)}"' not in page  # no button once in review
    history = console.call(console.state.registry.get_correction, ref).history
    assert [e.action for e in history].count("in_review") == 1 and history[-1].actor == "site:hcm07/minh"

    again = console.post(START.format(ref=ref))
    assert again.status_code == 303
    assert "Phản ánh này đã đang được xem xét." in console.client.get(again.headers["location"]).text
    assert [e.action for e in console.call(console.state.registry.get_correction, ref).history].count(
        "in_review"
    ) == 1


def test_who_may_start_a_review(console: Console) -> None:
    ref = demo_case_ref(console)  # routed to HCM07
    console.as_user("hoa")  # another site's staff: may not even see it
    assert console.post(START.format(ref=ref)).status_code == 403
    console.as_user("lan")  # a hotline agent works the hotline queue, not a site's reports
    assert console.post(START.format(ref=ref)).status_code == 403
    assert status_of(console, ref) == CaseStatus.ROUTED
    console.as_user("quan")
    assert console.post(START.format(ref=ref)).status_code == 303
    assert status_of(console, ref) == CaseStatus.IN_REVIEW


def viet_nam_midnight_plus(day: datetime, hours: float) -> datetime:
    """An instant `hours` after midnight of `day` in Viet Nam (UTC+7), as UTC."""
    return datetime.combine(day.date(), time(0), tzinfo=UTC) - timedelta(hours=7) + timedelta(hours=hours)


def test_sla_state_follows_the_day_in_viet_nam(console: Console) -> None:
    ref = demo_case_ref(console)
    due = console.call(console.state.registry.get_correction, ref).due_on
    console.as_user("minh")
    due_midnight = datetime.combine(due, time(0), tzinfo=UTC)
    # 00:30 on the due day in Viet Nam is still the day before in UTC (17:30)
    console.state.console.clock = lambda: viet_nam_midnight_plus(due_midnight, 0.5)
    assert console.state.console.clock().date() == due - timedelta(days=1)
    due_today = console.client.get("/agent/queue", params={"sla": "due_today"}).text
    assert f"/agent/cases/{ref}" in due_today
    assert f"/agent/cases/{ref}" not in console.client.get("/agent/queue", params={"sla": "on_time"}).text
    assert "Hết hạn hôm nay" in console.client.get(f"/agent/cases/{ref}").text
    # 23:30 on the due day in Viet Nam is still the due day
    console.state.console.clock = lambda: viet_nam_midnight_plus(due_midnight, 23.5)
    assert f"/agent/cases/{ref}" in console.client.get("/agent/queue", params={"sla": "due_today"}).text
    # 00:30 the day after: overdue
    console.state.console.clock = lambda: viet_nam_midnight_plus(due_midnight, 24.5)
    assert f"/agent/cases/{ref}" in console.client.get("/agent/queue", params={"sla": "overdue"}).text
    api = console.client.get("/api/corrections", headers=console.bearer("minh")).json()
    assert next(c for c in api["corrections"] if c["ref"] == ref)["sla_state"] == "overdue"


def test_a_dose_given_today_in_viet_nam_is_not_in_the_future(console: Console) -> None:
    ref = demo_case_ref(console)
    console.as_user("minh")
    now = datetime(2026, 3, 9, 18, 30, tzinfo=UTC)  # 01:30 on 10 March in Viet Nam
    console.state.console.clock = lambda: now
    form = {
        "record_dose": "yes",
        "dose_number": "2",
        "vaccine": "BBIBP-CorV",
        "lot": "L1",
        "site_code": "HCM07",
        "note": "given this morning",
    }
    tomorrow = console.post(f"/agent/cases/{ref}/approve", {**form, "administered_on": "2026-03-11"})
    assert tomorrow.status_code == 303
    assert "Ngày tiêm không hợp lệ." in console.client.get(tomorrow.headers["location"]).text
    assert status_of(console, ref) == CaseStatus.ROUTED  # refused: 11 March is tomorrow there
    today = console.post(f"/agent/cases/{ref}/approve", {**form, "administered_on": "2026-03-10"})
    assert today.status_code == 303
    assert status_of(console, ref) == CaseStatus.APPROVED
