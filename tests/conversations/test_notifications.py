"""Telling citizens about their reports: where the record says they are, exactly once."""

from __future__ import annotations

from datetime import date

from conversations.notifications import CaseNotifier
from conversations.outbound import make_renderer
from outbox.tables import OutboxRow
from registry_client.models import (
    CaseKind,
    ClaimedDose,
    Decision,
    DosesConcerned,
    DoseSource,
    NewCorrection,
    NewDose,
    Resolution,
)
from tests.conversations.harness import Stack

AN_PHONE = "+84901234567"


async def _case(stack: Stack, channel: str, address: str, contact: str | None = None) -> str:
    person = await stack.registry.find_person("048095006789", date(1995, 11, 30))
    case = await stack.registry.submit_correction(
        NewCorrection(
            kind=CaseKind.MISSING_DOSE,
            doses_concerned=DosesConcerned.FIRST,
            claimed=ClaimedDose(date(2021, 8, 15), "Pfizer", "HN001"),
            channel=channel,
            channel_address=address,
            person_id=person.id,
            contact_phone=contact,
        )
    )
    return case.ref


async def _approve(stack: Stack, ref: str) -> None:
    await stack.registry.resolve_correction(
        ref,
        Resolution(
            Decision.APPROVED,
            "found in the site's paper log",
            "site:hn001",
            NewDose(1, "EU/1/20/1528", date(2021, 8, 15), "HN001", "FF1234", source=DoseSource.CORRECTION),
        ),
    )


def _render(row: OutboxRow) -> str:
    return make_renderer(strip_sms_diacritics=True, hotline="1900 9095")(row)


async def test_resolved_case_is_told_once_by_sms_to_the_reporting_phone(stack: Stack) -> None:
    notifier = CaseNotifier(stack.outbox, stack.registry, clock=stack.clock)
    ref = await _case(stack, "ussd", "+84987654321")
    await _approve(stack, ref)
    case = await stack.registry.get_correction(ref)
    assert await notifier.notify_resolved(case, "http://vax.test/c/tok") is True
    assert await notifier.notify_resolved(case, "http://vax.test/c/tok") is False
    rows = await stack.outbox.messages_to("sms", "+84987654321")
    assert len(rows) == 1 and rows[0].idempotency_key == f"case:{ref}:approved"
    assert _render(rows[0]) == (
        f"VaxChannel: phan anh {ref} da duoc duyet, ho so tiem da cap nhat. Chung nhan: http://vax.test/c/tok"
    )


async def test_targets_follow_the_record_never_a_typed_or_retired_number(stack: Stack) -> None:
    """Changed contract (issue 12): the outcome of a report about a person goes to a chat still
    bound to that person through the registered phone, else to the registered phone — never to a
    contact number typed for the report, nor to a reporting number the record no longer holds."""
    bindings = stack.service.bindings
    notifier = CaseNotifier(stack.outbox, stack.registry, clock=stack.clock, bindings=bindings)
    cuong = await stack.registry.find_person("048095006789", date(1995, 11, 30))
    await bindings.bind("telegram", "777001", cuong.id, via_phone="+84987654321")
    telegram = await _case(stack, "telegram", "777001")
    await stack.registry.resolve_correction(
        telegram, Resolution(Decision.REJECTED, "no record at the site", "s")
    )
    assert await notifier.notify_resolved(await stack.registry.get_correction(telegram))
    rows = await stack.outbox.messages_to("telegram", "777001")
    assert len(rows) == 1 and "no record at the site" in _render(rows[0])

    unbound = await _case(stack, "telegram", "777002")  # that chat's binding has ended since
    await stack.registry.resolve_correction(unbound, Resolution(Decision.REJECTED, "duplicate", "s"))
    assert await notifier.notify_resolved(await stack.registry.get_correction(unbound))
    assert await stack.outbox.messages_to("telegram", "777002") == []

    console = await _case(stack, "console", "agent:lan", contact="+84911222333")
    await stack.registry.resolve_correction(console, Resolution(Decision.REJECTED, "duplicate", "s"))
    assert await notifier.notify_resolved(await stack.registry.get_correction(console))
    assert await stack.outbox.messages_to("sms", "+84911222333") == []  # a typed number: never

    retired = await _case(stack, "sms", "+84911000999")  # filed from a number no longer on record
    await _approve(stack, retired)
    assert await notifier.notify_resolved(await stack.registry.get_correction(retired), "http://vax.test/c/t")
    assert await stack.outbox.messages_to("sms", "+84911000999") == []
    to_registered = await stack.outbox.messages_to("sms", "+84987654321")  # Cuong's registered phone
    assert len(to_registered) == 3 and "http://vax.test/c/t" in _render(to_registered[-1])


async def test_sweep_tells_cases_closed_without_notice_once(stack: Stack) -> None:
    notifier = CaseNotifier(stack.outbox, stack.registry, certificates=None, clock=stack.clock)
    ref = await _case(stack, "sms", "+84987654321")
    await _approve(stack, ref)  # e.g. closed by a dose import: nobody told the citizen
    assert await notifier.sweep_resolved() == 1
    assert await notifier.sweep_resolved() == 0
    rows = await stack.outbox.messages_to("sms", "+84987654321")
    assert [r.template for r in rows] == ["sms.case_approved"]


async def test_still_handling_at_most_once_a_day(stack: Stack) -> None:
    notifier = CaseNotifier(stack.outbox, stack.registry, clock=stack.clock)
    case = await stack.registry.get_correction(await _case(stack, "sms", "+84987654321"))
    assert await notifier.notify_still_handling(case, "Trạm Y tế Phường Dịch Vọng")
    assert not await notifier.notify_still_handling(case, "Trạm Y tế Phường Dịch Vọng")
    stack.clock.advance(days=1)
    assert await notifier.notify_still_handling(case, "Trạm Y tế Phường Dịch Vọng")
    rows = await stack.outbox.messages_to("sms", "+84987654321")
    assert _render(rows[0]) == (
        f"VaxChannel: phan anh {case.ref} dang duoc Tram Y te Phuong Dich Vong xu ly. "
        "Chung toi se bao khi co ket qua."
    )
