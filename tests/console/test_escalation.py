"""The escalation job with a pinned clock, on SQLite and PostgreSQL: overdue reports are marked,
the site's users and the hotline queue are notified, the citizen is told who is handling it; no
duplicates within a tick or across workers; reminders while the report stays open."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from registry_client.models import CaseKind, Decision, Resolution
from tests.console.conftest import AN, CUONG, Console, demo_case_ref, file_case, start_console
from tests.console.test_agent import outbox_rows
from web.console.escalation import EscalationJob
from web.console.tables import EscalationRow, NotificationRow


@pytest.fixture
def any_db_console(db_url: str, tmp_path: Path) -> Iterator[Console]:
    yield from start_console(db_url, tmp_path / "data")


class PinnedClock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


def notifications(console: Console) -> list[tuple[str, str, str | None]]:
    async def rows() -> list[tuple[str, str, str | None]]:
        async with console.state.db_sessions() as session:
            found = await session.scalars(select(NotificationRow).order_by(NotificationRow.id))
            return [(n.audience, n.kind, n.ref) for n in found.all()]

    return console.call(rows)


def still_handling(console: Console) -> list[tuple[str, str, str]]:
    return [
        (r.address, r.params["ref"], r.params["handler"])
        for r in outbox_rows(console)
        if r.template == "sms.case_still_handling"
    ]


def test_escalation_with_a_pinned_clock(any_db_console: Console) -> None:
    console = any_db_console
    assert "console-escalation" in [name for name, _, _ in console.state.background]
    demo = console.call(console.state.registry.get_correction, demo_case_ref(console))
    hotline = file_case(console, CUONG)
    done = file_case(console, AN, site="HN001", kind=CaseKind.OTHER, doses_concerned=None)
    console.call(
        console.state.registry.resolve_correction, done.ref, Resolution(Decision.REJECTED, "no", "test")
    )
    assert demo.due_on == hotline.due_on

    clock = PinnedClock(datetime.combine(demo.due_on, time(9, 0), tzinfo=UTC))
    console.state.case_notifier.clock = clock
    job = EscalationJob(console.state.console, clock=clock)
    due_day = console.call(job.tick)
    assert due_day.escalated == [] and due_day.reminded == []  # due today is not overdue yet

    clock.at += timedelta(days=1)
    first = console.call(job.tick)
    assert sorted(first.escalated) == sorted([demo.ref, hotline.ref]) and first.citizens_told == 2
    assert sorted(notifications(console)) == sorted(
        [
            ("site:HCM07", "overdue", demo.ref),
            ("hotline", "overdue", demo.ref),
            ("hotline", "overdue", hotline.ref),
        ]
    )
    assert sorted(still_handling(console)) == sorted(
        [
            ("+84912345678", demo.ref, "Trạm Y tế Phường Tân Phong, Quận 7"),
            ("+84987654321", hotline.ref, "tổng đài hỗ trợ 1900 9095"),
        ]
    )

    # the same tick again (or another worker's tick) adds nothing
    again = console.call(job.tick)
    assert again.escalated == again.reminded == []
    other_worker = EscalationJob(console.state.console, clock=clock)
    assert console.call(other_worker.tick).escalated == []
    assert len(notifications(console)) == 3 and len(still_handling(console)) == 2

    clock.at += timedelta(days=3)
    assert console.call(job.tick).reminded == []
    clock.at += timedelta(days=4)  # a week after the first notice: no silent weeks
    console.call(
        console.state.registry.resolve_correction, hotline.ref, Resolution(Decision.REJECTED, "dup", "test")
    )
    reminder = console.call(job.tick)
    assert reminder.reminded == [demo.ref] and reminder.escalated == []
    assert len(still_handling(console)) == 3
    assert ("site:HCM07", "still_overdue", demo.ref) in notifications(console)

    async def marks() -> dict[str, tuple[int, bool]]:
        async with console.state.db_sessions() as session:
            rows = await session.scalars(select(EscalationRow))
            return {r.ref: (r.notices, r.citizen_told) for r in rows.all()}

    assert console.call(marks) == {demo.ref: (2, True), hotline.ref: (1, True)}

    # what the people see
    console.as_user("minh")
    queue = console.client.get("/agent/queue").text
    assert "đã nhắc 2 lần" in queue
    notes = console.client.get("/agent/notifications").text
    assert f"Phản ánh {demo.ref} đã quá hạn xử lý" in notes and hotline.ref not in notes
    assert '<span class="count"' in console.client.get("/agent/queue").text
    console.post("/agent/notifications/read")
    assert '<span class="count"' not in console.client.get("/agent/queue").text
    console.as_user("lan")
    assert hotline.ref in console.client.get("/agent/notifications").text
