"""Enumerating identities and flooding phones with codes.

- One caller trying ID/date-of-birth pairs gets five "no record" answers per 15 minutes (per
  channel and number), across USSD sessions; then "too many attempts", even for a right pair.
- One national ID tried with wrong dates of birth from many phones is blocked after ten misses in
  an hour, for everybody (a date of birth is guessable: ~30,000 candidates).
- A phone receives at most five codes an hour, however many people (on a family phone) and
  callers ask; one person's login sends at most five codes an hour.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from conversations.wiring import build_conversations
from registry_client.clock import utc_now
from tests.faults.service import (
    AN,
    BINH,
    FAMILY,
    FAMILY_PHONE,
    Service,
    base_settings,
    expected,
    expected_start,
    flat,
    running,
)
from web import observability

UNKNOWN = [(f"001099{n:06d}", "01011990") for n in range(1, 8)]


@pytest.fixture
async def service(demo_db: str, tmp_path: Path) -> AsyncIterator[Service]:
    async with running(base_settings(demo_db, tmp_path / "data")) as svc:
        yield svc


async def test_one_caller_trying_pairs_is_slowed_down(service: Service) -> None:
    sms = service.sms("+84900000301")
    for national_id, born in UNKNOWN[:4]:
        assert (await sms.send(f"DK {national_id} {born}")).startswith(expected("login.not_found"))
    assert await sms.send(f"DK {UNKNOWN[4][0]} {UNKNOWN[4][1]}") == expected(
        "login.not_found_limited", minutes=15
    )
    # now even a right pair is not looked up (no oracle), and no code goes out
    assert (await sms.send(f"DK {AN[1]} {AN[2]}")).startswith(expected_start("login.not_found_limited"))
    assert await service.outbox_to(AN[0], "otp") == []


async def test_one_caller_trying_pairs_over_many_ussd_sessions(service: Service) -> None:
    caller = service.ussd("+84900000302")
    for national_id, born in UNKNOWN[:4]:
        await caller.dial()
        assert (
            flat(await caller.answers("1", national_id, born))
            == "CON " + expected("login.not_found") + " 0 Quay lai"
        )
    await caller.dial()
    screen = flat(await caller.answers("1", *UNKNOWN[4]))
    assert screen.startswith("CON " + expected("login.not_found_limited", minutes=15)), screen
    await caller.dial()
    screen = flat(await caller.answers("1", AN[1], AN[2]))
    assert screen.startswith("CON " + expected_start("login.not_found_limited")), screen
    assert await service.outbox_to(AN[0], "otp") == []


async def test_one_id_tried_from_many_phones_is_blocked_for_everybody(service: Service) -> None:
    wrong_birthdays = [f"{day:02d}031985" for day in range(1, 11)]
    for number, born in enumerate(wrong_birthdays):
        reply = await service.sms(f"+8490000040{number}").send(f"DK {AN[1]} {born}")
        assert reply.startswith(expected("login.not_found")), (number, reply)
    # the eleventh phone has the right date of birth: not even looked up
    reply = await service.sms("+84900000411").send(f"DK {AN[1]} {AN[2]}")
    assert reply.startswith(expected_start("login.not_found_limited")), reply
    assert await service.outbox_to(AN[0], "otp") == []
    # other people are not affected
    assert (await service.sms("+84900000412").send(f"DK {BINH[1]} {BINH[2]}")).startswith(
        expected("login.code_sent")
    )


class SkippingClock:
    """Real time plus the minutes the test skipped (codes are a minute apart at least)."""

    def __init__(self) -> None:
        self.skipped = timedelta()

    def __call__(self) -> Any:
        return utc_now() + self.skipped

    def skip(self, **delta: float) -> None:
        self.skipped += timedelta(**delta)


@pytest.fixture
async def clocked(demo_db: str, tmp_path: Path) -> AsyncIterator[tuple[Service, SkippingClock]]:
    clock = SkippingClock()

    async def engine_on_clock(app: Any) -> None:
        app.state.conversations = build_conversations(app.state.settings, app.state, clock=clock)
        observability.instrument_otp(app.state.conversations.services.otp)

    async with running(base_settings(demo_db, tmp_path / "data"), prepare=engine_on_clock) as svc:
        yield svc, clock


async def test_a_family_phone_gets_at_most_five_codes_an_hour(clocked: tuple[Service, SkippingClock]) -> None:
    service, clock = clocked
    answers = []
    for round_ in range(3):  # the three persons on the phone, asked for by a new caller each time
        for number, (national_id, born) in enumerate(FAMILY):
            answers.append(await service.sms(f"+849000005{round_}{number}").send(f"DK {national_id} {born}"))
        clock.skip(seconds=61)
    sent = [a for a in answers if a.startswith(expected("login.code_sent"))]
    refused = [a for a in answers if a.startswith(expected_start("login.too_many_codes"))]
    assert (len(sent), len(refused)) == (5, 4), answers
    assert len(await service.outbox_to(FAMILY_PHONE, "otp")) == 5

    clock.skip(minutes=60)  # a new hour
    reply = await service.sms("+84900000599").send(f"DK {FAMILY[0][0]} {FAMILY[0][1]}")
    assert reply.startswith(expected("login.code_sent")), reply
    assert len(await service.outbox_to(FAMILY_PHONE, "otp")) == 6


async def test_one_person_gets_at_most_five_codes_an_hour(clocked: tuple[Service, SkippingClock]) -> None:
    service, clock = clocked
    answers = []
    for number in range(7):
        answers.append(await service.sms(f"+8490000060{number}").send(f"DK {AN[1]} {AN[2]}"))
        clock.skip(seconds=61)
    assert [a.startswith(expected("login.code_sent")) for a in answers] == [True] * 5 + [False] * 2, answers
    assert all(a.startswith(expected_start("login.too_many_codes")) for a in answers[5:]), answers
    assert len(await service.outbox_to(AN[0], "otp")) == 5
    metrics = (await service.client.get("/metrics")).text
    assert 'otp_refusals_total{reason="too_many"}' in metrics
