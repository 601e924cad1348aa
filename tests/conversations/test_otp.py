"""One-time codes: hashing, expiry, wrong-code lockout, resend delay, hourly limits, the
rate-limited "no record" answer, and where codes go."""

from __future__ import annotations

import dataclasses

from sqlalchemy import select

from conversations.model import Channel
from conversations.otp import CheckOutcome, CheckResult
from conversations.tables import OtpChallengeRow
from tests.conversations.harness import PINNED_CODE, Phone, Stack

AN_ID, AN_DOB, AN_PHONE = "001085012345", "14031985", "+84901234567"


async def start_login(phone: Phone) -> str:
    return await phone.send(f"DK {AN_ID} {AN_DOB}")


async def test_code_is_stored_hashed_and_sent_only_to_the_registered_phone(stack: Stack) -> None:
    caller = Phone(stack, Channel.SMS, "+84999888777")  # not An's phone
    reply = await start_login(caller)
    assert "Ma 6 so da gui qua SMS toi so dien thoai dang ky" in reply
    assert "09" not in reply and "Nguyen" not in reply  # nothing about the person before the code
    assert await stack.sent_sms("+84999888777") == []
    assert PINNED_CODE in (await stack.sent_sms(AN_PHONE))[-1]
    async with stack.sessions() as db:
        row = (await db.scalars(select(OtpChallengeRow))).one()
    assert PINNED_CODE not in row.code_hash and len(row.code_hash) == 64
    assert "Da xac thuc: Nguyen Van An" in await caller.send(PINNED_CODE)


async def test_expired_code_is_refused_and_a_new_one_can_be_asked(stack: Stack) -> None:
    phone = Phone(stack, Channel.SMS, AN_PHONE)
    await start_login(phone)
    stack.clock.advance(seconds=301)
    assert "Ma da het han" in await phone.send(PINNED_CODE)
    stack.codes.queue.append("111222")
    assert "Ma 6 so da gui" in await phone.send("1")  # resend
    assert "111222" in (await stack.sent_sms(AN_PHONE))[-1]
    assert "Da xac thuc" in await phone.send("111222")


async def test_resend_only_after_60_seconds(stack: Stack) -> None:
    phone = Phone(stack, Channel.SMS, AN_PHONE)
    await start_login(phone)
    stack.clock.advance(seconds=30)
    reply = await phone.send("1")
    assert "Vui long doi 30 giay" in reply
    assert len(await stack.sent_sms(AN_PHONE)) == 1
    stack.clock.advance(seconds=31)
    assert "Ma 6 so da gui" in await phone.send("1")
    assert len(await stack.sent_sms(AN_PHONE)) == 2


async def test_five_wrong_codes_lock_the_persons_login_for_15_minutes(stack: Stack) -> None:
    phone = Phone(stack, Channel.SMS, AN_PHONE)
    await start_login(phone)
    for left in (4, 3, 2, 1):
        assert f"Con {left} lan thu" in await phone.send("000000")
    assert "tam khoa" in await phone.send("000000")
    # the right code does not help now, nor does a new login from another phone
    assert "Da xac thuc" not in await phone.send(PINNED_CODE)
    other = Phone(stack, Channel.USSD, "+84977000111")
    await other.dial()
    await other.send("1")
    await other.send(AN_ID)
    assert "tam khoa" in await other.send(AN_DOB)
    stack.clock.advance(minutes=15, seconds=1)
    assert "Ma 6 so da gui" in await start_login(phone)
    assert "Da xac thuc: Nguyen Van An" in await phone.send(PINNED_CODE)


async def test_at_most_five_codes_an_hour_per_person(stack: Stack) -> None:
    phone = Phone(stack, Channel.SMS, AN_PHONE)
    for _ in range(5):
        assert "Ma 6 so da gui" in await start_login(phone)
        stack.clock.advance(seconds=61)
    assert "qua nhieu ma trong 1 gio" in await start_login(phone)
    assert len(await stack.sent_sms(AN_PHONE)) == 5
    stack.clock.advance(minutes=56)
    assert "Ma 6 so da gui" in await start_login(phone)


async def test_at_most_five_codes_an_hour_per_destination_phone(stack: Stack) -> None:
    family = [("001182003333", "02051982"), ("001210004444", "24122010"), ("001050005555", "08011950")]
    callers = [Phone(stack, Channel.SMS, f"+8497700{i:04d}") for i in range(6)]
    replies = []
    for i, caller in enumerate(callers):
        national_id, born = family[i % 3]
        replies.append(await caller.send(f"DK {national_id} {born}"))
        stack.clock.advance(seconds=61)
    assert all("Ma 6 so da gui" in r for r in replies[:5])
    assert "qua nhieu ma trong 1 gio" in replies[5]
    assert len(await stack.sent_sms("+84938111222")) == 5


async def test_no_record_answer_is_rate_limited_per_caller(stack: Stack) -> None:
    phone = Phone(stack, Channel.SMS, "+84977123456")
    for _ in range(4):
        assert "Khong co ho so" in await phone.send(f"DK {AN_ID} 01011990")
    assert "thu qua nhieu lan" in await phone.send(f"DK {AN_ID} 01011990")
    # even a right ID and date of birth gets no answer about the record now
    assert "thu qua nhieu lan" in await phone.send(f"DK {AN_ID} {AN_DOB}")
    assert await stack.sent_sms(AN_PHONE) == []
    stack.clock.advance(minutes=16)
    assert "Ma 6 so da gui" in await phone.send(f"DK {AN_ID} {AN_DOB}")


async def test_codes_are_random_six_digits() -> None:
    from conversations.otp import random_code

    codes = {random_code() for _ in range(200)}
    assert all(len(c) == 6 and c.isdigit() for c in codes)
    assert len(codes) > 190


async def test_a_code_is_bound_to_the_caller_that_asked(stack: Stack) -> None:
    """Someone else cannot use a code sent for another caller's login."""
    asker = Phone(stack, Channel.SMS, "+84977000999")
    await start_login(asker)
    intruder = Phone(stack, Channel.USSD, "+84977000888")
    await intruder.dial()
    assert "Da xac thuc" not in await intruder.send(PINNED_CODE)
    assert await stack.service.bindings.persons_for(Channel.USSD, "+84977000888") == []


async def test_a_check_outcome_other_than_ok_never_logs_in(stack: Stack) -> None:
    """Login fails closed: whatever a code check answers that is not OK (here a value the flow
    does not know, as a changed OtpService might return) is refused and binds nobody."""
    otp = stack.service.services.otp
    real_check = otp.check

    async def foreign_outcome(*args: object, **kwargs: object) -> CheckResult:
        result = await real_check(*args, **kwargs)
        return dataclasses.replace(result, outcome="accepted")  # type: ignore[arg-type]

    otp.check = foreign_outcome  # type: ignore[method-assign]
    phone = Phone(stack, Channel.SMS, AN_PHONE)
    await start_login(phone)
    reply = await phone.send(PINNED_CODE)
    assert "Da xac thuc" not in reply and "tam khoa" in reply, reply
    assert await stack.service.bindings.persons_for("sms", AN_PHONE) == []
    otp.check = real_check  # type: ignore[method-assign]


async def test_a_spent_budget_compares_nothing_not_even_the_right_code(stack: Stack) -> None:
    """Guesses in flight at once (other requests, other workers) have each taken their unit before
    any of them closed the code: once the budget is spent, the right code is refused too, because
    it is never compared."""
    phone = Phone(stack, Channel.SMS, AN_PHONE)
    await start_login(phone)
    otp = stack.service.services.otp
    challenge = await otp.pending_for("sms", AN_PHONE)
    assert challenge is not None
    in_flight = [await otp.check(challenge, "000000") for _ in range(5)]  # their effects not yet applied
    assert [r.outcome for r in in_flight] == [CheckOutcome.WRONG] * 4 + [CheckOutcome.LOCKED]
    late_but_right = await otp.check(challenge, PINNED_CODE)
    assert late_but_right.outcome == CheckOutcome.LOCKED
