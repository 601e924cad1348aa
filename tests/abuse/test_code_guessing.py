"""Guessing a one-time code: someone who knows a person's ID and date of birth has a code sent to
that person's phone and guesses. Five wrong tries in all lock the person's login for 15 minutes —
across USSD sessions, across channels, across two service instances on one PostgreSQL database,
and with guesses sent all at once. The right code is refused once locked."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from pathlib import Path

from tests.faults.service import AN, Service, base_settings, expected, flat, running

ATTACKER = "+84900000666"
ACCOMPLICE = "+84900000777"


def wrong_guesses(right: str, count: int) -> list[str]:
    guesses = [f"{(int(right) + 1 + i * 7919) % 10**6:06d}" for i in range(count)]
    assert right not in guesses
    return guesses


async def request_code_by_ussd(service: Service, phone: str) -> str:
    caller = service.ussd(phone)
    await caller.dial()
    return flat(await caller.answers("1", AN[1], AN[2]))


async def assert_locked_for_good(service: Service, reply_to_right_code: str) -> None:
    """The right code did not log in, no new code is sent, on any channel, nobody is bound."""
    assert expected("login.success", name="Nguyen Van An") not in reply_to_right_code
    assert "Mui 1" not in reply_to_right_code
    codes_before = len(await service.outbox_to(AN[0], "otp"))
    refused = await service.sms(ACCOMPLICE).send(f"DK {AN[1]} {AN[2]}")
    assert refused.startswith(expected("login.locked", minutes=15)), refused
    assert len(await service.outbox_to(AN[0], "otp")) == codes_before
    assert await service.state.conversations.bindings.persons_for("sms", ATTACKER) == []
    assert await service.state.conversations.bindings.persons_for("ussd", ATTACKER) == []


async def test_guessing_across_ussd_sessions_and_channels_locks_after_five(
    demo_db: str, tmp_path: Path
) -> None:
    async with running(base_settings(demo_db, tmp_path / "data")) as service:
        assert (await request_code_by_ussd(service, ATTACKER)).startswith(
            "CON " + expected("login.code_sent")
        )
        right = await service.last_code(AN[0])
        guesses = wrong_guesses(right, 5)

        caller = service.ussd(ATTACKER)
        await caller.dial()
        await caller.answers("1", AN[1], AN[2])  # a new session: the same code is still waiting
        for left, guess in zip((4, 3), guesses[:2], strict=True):
            assert flat(await caller.send(guess)).startswith("CON " + expected("login.bad_code", left=left))

        await caller.dial()  # yet another session: back at the code step (resumed, or the code still waits)
        screen = flat(await caller.answers("1", AN[1], AN[2]))
        assert screen.startswith("CON ") and "Nhap ma" in screen, screen
        assert flat(await caller.send(guesses[2])).startswith("CON " + expected("login.bad_code", left=2))

        # by SMS: no new code within a minute, and a code is only taken where it was asked for
        sms = service.sms(ATTACKER)
        assert (await sms.send(f"DK {AN[1]} {AN[2]}")).startswith(
            expected("login.resend_wait", seconds=60)[:20]
        )
        assert (await sms.send(guesses[3])) == expected("help.sms")  # not compared with anything

        assert flat(await caller.send(guesses[3])).startswith("CON " + expected("login.bad_code", left=1))
        assert flat(await caller.send(guesses[4])).startswith("CON " + expected("login.locked", minutes=15))

        await assert_locked_for_good(service, flat(await caller.send(right)))
        metrics = (await service.client.get("/metrics")).text
        assert (
            'otp_checks_total{outcome="wrong"}' in metrics and 'otp_checks_total{outcome="locked"}' in metrics
        )
        assert 'otp_refusals_total{reason="locked"}' in metrics


async def test_guessing_on_two_instances_sharing_one_database(pg_demo: str, tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        first = await stack.enter_async_context(running(base_settings(pg_demo, tmp_path / "one")))
        second = await stack.enter_async_context(running(base_settings(pg_demo, tmp_path / "two")))
        assert (await first.sms(ATTACKER).send(f"DK {AN[1]} {AN[2]}")).startswith(expected("login.code_sent"))
        right = await first.last_code(AN[0])
        answers = []
        for number, guess in enumerate(wrong_guesses(right, 5)):
            instance = (first, second)[number % 2]
            answers.append(await instance.sms(ATTACKER).send(guess))
        assert [a.split("\n")[0] for a in answers[:4]] == [
            expected("login.bad_code", left=n) for n in (4, 3, 2, 1)
        ]
        assert answers[4].startswith(expected("login.locked", minutes=15)), answers
        for instance in (first, second):
            reply = await instance.sms(ATTACKER).send(right)
            assert reply == expected("login.no_pending") or reply == expected("help.sms"), reply
            await assert_locked_for_good(instance, reply)


async def test_a_burst_of_guesses_compares_at_most_five(pg_demo: str, tmp_path: Path) -> None:
    """Twenty guesses at once, from the attacker's phone, over two instances: at most five are
    compared, the rest are refused, and the right code does not work afterwards."""
    async with AsyncExitStack() as stack:
        first = await stack.enter_async_context(running(base_settings(pg_demo, tmp_path / "one")))
        second = await stack.enter_async_context(running(base_settings(pg_demo, tmp_path / "two")))
        assert (await first.sms(ATTACKER).send(f"DK {AN[1]} {AN[2]}")).startswith(expected("login.code_sent"))
        right = await first.last_code(AN[0])
        guesses = wrong_guesses(right, 20)
        replies = await asyncio.gather(
            *((first, second)[n % 2].sms(ATTACKER).send(guess) for n, guess in enumerate(guesses))
        )
        compared = [r for r in replies if r.startswith(expected("login.bad_code", left=0)[:14])]
        assert len(compared) <= 4, replies  # four "wrong, n left" answers at most; the fifth locks
        assert all(expected("common.error") not in r for r in replies), replies
        await assert_locked_for_good(first, await second.sms(ATTACKER).send(right))
