"""Certificate codes: the generator and parser (properties), the shortened name, and the store on
real databases (SQLite and PostgreSQL): one code per certificate, a new code on reissue, status
following the certificate, a wrong year revealing nothing, lockout and per-caller limits."""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from certificates.check_character import ALPHABET, check_character, is_valid
from certificates.code_store import (
    CHECK_CODE,
    EXPIRED,
    LOCKED,
    REVOKED,
    TOO_MANY,
    UNKNOWN,
    VALID,
    CertificateCodes,
    GuessingLimits,
    certificate_status,
)
from certificates.code_tables import CertificateCodeRow, CodeAttemptRow
from certificates.codes import (
    CODE_LENGTH,
    RANDOM_BITS,
    canonical,
    format_code,
    generate_code,
    mask_code,
    parse_code,
)
from certificates.names import shortened_name
from certificates.service import CertificateService, build_certificate_service
from db.base import make_async_engine, make_sessionmaker
from settings import Settings

# -- the code itself ----------------------------------------------------------------------------


def test_a_code_has_at_least_50_random_bits_and_no_look_alikes() -> None:
    assert RANDOM_BITS >= 50
    assert not set("0O1IL") & set(ALPHABET) and len(ALPHABET) == 31
    code = generate_code()
    assert len(code) == CODE_LENGTH == 12 and set(code) <= set(ALPHABET) and is_valid(code)
    shown = format_code(code)
    assert len(shown) == 14 and shown[4] == shown[9] == "-" and canonical(shown) == code


def test_a_million_codes_are_unique_and_carry_their_check_character() -> None:
    started = time.perf_counter()
    codes = {generate_code() for _ in range(1_000_000)}
    assert len(codes) == 1_000_000
    assert time.perf_counter() - started < 30
    sample = itertools.islice(codes, 20_000)
    assert all(c[-1] == check_character(c[:-1]) for c in sample)
    # every symbol is used in every position (no bias towards a subset of the alphabet)
    for position in range(CODE_LENGTH - 1):
        assert {c[position] for c in itertools.islice(codes, 5000)} == set(ALPHABET)


bodies = st.text(alphabet=ALPHABET, min_size=11, max_size=11)


@settings(max_examples=300, deadline=None)
@given(bodies)
def test_the_check_character_catches_every_substitution_and_adjacent_swap(body: str) -> None:
    code = body + check_character(body)
    assert is_valid(code)
    for position in range(len(code)):
        for symbol in ALPHABET:
            if symbol != code[position]:
                typo = code[:position] + symbol + code[position + 1 :]
                assert not is_valid(typo), (code, typo)
                assert parse_code(typo).problem == "check"
    for position in range(len(code) - 1):
        a, b = code[position], code[position + 1]
        if a != b:
            swapped = code[:position] + b + a + code[position + 2 :]
            assert not is_valid(swapped), (code, swapped)


@pytest.mark.parametrize(
    ("typed", "problem"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("VX7K-3D9Q-MRT", "length"),
        ("VX7K-3D9Q-MRT44", "length"),
        ("VX7K-3D9Q-MRTO", "character"),  # letter O is never in a code
        ("VX7K-3D9Q-MRT0", "character"),
        ("VX7K-3D9Q-MRTI", "character"),
        ("VX7K-3D9Q-MRT1", "character"),
        ("VX7K-3D9Q-MRTL", "character"),
        ("VX7K-3D9Q-MRT!", "character"),
    ],
)
def test_parse_tells_what_is_wrong(typed: str, problem: str) -> None:
    parsed = parse_code(typed)
    assert not parsed.ok and parsed.problem == problem


def test_parse_accepts_any_case_spaces_and_dashes() -> None:
    code = generate_code()
    shown = format_code(code)
    for typed in (code, shown, shown.lower(), f"  {shown[:4]} {shown[5:9]} {shown[10:]} ", code.lower()):
        assert parse_code(typed).code == code
    assert parse_code(None).problem == "empty" and parse_code(12345).problem == "empty"
    assert mask_code(shown) == code[:4] + "…"


@pytest.mark.parametrize(
    ("full", "short"),
    [
        ("Nguyễn Thị Ánh", "Nguyễn T. Ánh"),
        ("Nguyễn Văn An", "Nguyễn V. An"),
        ("Tôn Nữ Thị Ngọc Hân", "Tôn N. T. N. Hân"),
        ("Phạm Minh Đức", "Phạm M. Đức"),
        ("Lê  Hoa", "Lê Hoa"),
        ("Mai", "Mai"),
        ("", ""),
    ],
)
def test_shortened_name(full: str, short: str) -> None:
    assert shortened_name(full) == short


def test_status_prefers_expired_when_a_certificate_ran_out_before_it_was_replaced() -> None:
    now = datetime(2025, 6, 1, tzinfo=UTC)
    assert certificate_status(now + timedelta(days=1), None, now) == VALID
    assert certificate_status(now - timedelta(days=1), None, now) == EXPIRED
    assert certificate_status(now + timedelta(days=1), now - timedelta(hours=1), now) == REVOKED
    assert certificate_status(now - timedelta(days=9), now - timedelta(days=1), now) == EXPIRED
    assert certificate_status(now + timedelta(days=1), now + timedelta(hours=1), now) == VALID


# -- the store, on SQLite and PostgreSQL ---------------------------------------------------------


@dataclass(frozen=True)
class Holder:
    id: str
    national_id: str
    date_of_birth: date
    full_name: str


@dataclass(frozen=True)
class Dose:
    dose_number: int
    product: str
    administered_on: date
    lot: str | None
    site_code: str


ANH = Holder("p-anh", "001190001234", date(1990, 4, 2), "Nguyễn Thị Ánh")
ANH_DOSES = (
    Dose(1, "EU/1/21/1529", date(2021, 8, 2), "AZ-1", "HN001"),
    Dose(2, "EU/1/21/1529", date(2021, 10, 25), "AZ-2", "HN001"),
)
BAO = Holder("p-bao", "001170005678", date(1970, 1, 9), "Trần Bảo")
BAO_DOSES = (Dose(1, "EU/1/20/1528", date(2021, 9, 1), "FK-1", "HN002"),)


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Stack:
    service: CertificateService
    codes: CertificateCodes
    clock: Clock


@pytest.fixture
async def stack(db_url: str, tmp_path: Path) -> AsyncIterator[Stack]:
    settings_ = Settings(database_url=db_url, data_dir=tmp_path / "data", secret_key="codes-tests")
    engine = make_async_engine(db_url)
    clock = Clock()
    service = build_certificate_service(settings_, make_sessionmaker(engine), clock=clock)
    yield Stack(service, service.codes, clock)
    await engine.dispose()


async def test_one_code_per_certificate_and_the_answers(stack: Stack) -> None:
    code = await stack.service.code_for(ANH, ANH_DOSES)
    assert await stack.service.code_for(ANH, ANH_DOSES) == code  # unchanged certificate: same code
    assert parse_code(code).ok and code == format_code(canonical(code))
    other = await stack.service.code_for(BAO, BAO_DOSES)
    assert other != code

    ok = await stack.service.verify_code(code.lower().replace("-", " "), 1990)
    assert (ok.valid, ok.reason, ok.holder_name, ok.birth_year, ok.doses, ok.latest_dose_date) == (
        True,
        VALID,
        "Nguyễn T. Ánh",
        1990,
        2,
        date(2021, 10, 25),
    )
    wrong_year = await stack.codes.check(code, 1991)
    assert (wrong_year.valid, wrong_year.reason, wrong_year.holder_name, wrong_year.doses) == (
        False,
        UNKNOWN,
        None,
        0,
    )
    assert wrong_year.birth_year is None and wrong_year.latest_dose_date is None
    body = canonical(generate_code())
    while body == canonical(code) or body == canonical(other):
        body = canonical(generate_code())
    unknown = await stack.codes.check(body, 1990)
    assert (unknown.reason, unknown.holder_name) == (UNKNOWN, None)  # the same answer as a wrong year
    mistyped = canonical(code)
    position = 5
    mistyped = mistyped[:position] + next(s for s in ALPHABET if s != mistyped[position]) + mistyped[6:]
    typo = await stack.codes.check(mistyped, 1990)
    assert (typo.reason, typo.holder_name) == (CHECK_CODE, None)


async def test_a_reissued_certificate_gets_a_new_code_and_the_old_one_reports_revoked(stack: Stack) -> None:
    old = await stack.service.code_for(ANH, ANH_DOSES)
    corrected = (*ANH_DOSES, Dose(3, "EU/1/20/1528", date(2022, 3, 1), "FK-9", "HN002"))
    stack.clock.now += timedelta(minutes=1)
    new = await stack.service.code_for(ANH, corrected)
    assert new != old
    revoked = await stack.codes.check(old, 1990)
    assert (revoked.valid, revoked.reason, revoked.holder_name, revoked.doses) == (
        False,
        REVOKED,
        "Nguyễn T. Ánh",
        2,
    )
    fresh = await stack.codes.check(new, 1990)
    assert (fresh.valid, fresh.doses, fresh.latest_dose_date) == (True, 3, date(2022, 3, 1))
    stack.clock.now += timedelta(days=400)  # past the certificate's validity (365 days)
    expired = await stack.codes.check(new, 1990)
    assert (expired.valid, expired.reason, expired.holder_name) == (False, EXPIRED, "Nguyễn T. Ánh")
    renewed = await stack.service.code_for(ANH, corrected)  # the renewal: a new certificate and code
    assert renewed not in (new, old)
    assert (await stack.codes.check(renewed, 1990)).valid
    assert (await stack.codes.check(new, 1990)).reason == EXPIRED  # ran out before it was replaced


async def test_wrong_years_lock_the_code_and_failures_block_the_caller(stack: Stack) -> None:
    code = await stack.service.code_for(ANH, ANH_DOSES)
    limits = stack.codes.limits
    for i in range(limits.code_failures):
        answer = await stack.codes.check(code, 1900 + i, caller=f"ip:10.0.0.{i}")
        assert answer.reason == UNKNOWN and answer.holder_name is None
    locked = await stack.codes.check(code, 1990, caller="ip:10.0.1.1")  # even the right year
    assert (locked.valid, locked.reason, locked.holder_name) == (False, LOCKED, None)
    assert 0 < locked.retry_after <= limits.code_lock.total_seconds()
    other = await stack.service.code_for(BAO, BAO_DOSES)
    assert (await stack.codes.check(other, 1970, caller="ip:10.0.1.1")).valid  # only that code
    stack.clock.now += limits.code_lock + timedelta(seconds=1)
    assert (await stack.codes.check(code, 1990)).valid  # the lock is over

    guesser = "sms:+84900000001"
    for _ in range(limits.caller_failures):
        assert (await stack.codes.check(generate_code(), 1990, caller=guesser)).reason == UNKNOWN
    blocked = await stack.codes.check(code, 1990, caller=guesser)
    assert (blocked.valid, blocked.reason, blocked.holder_name) == (False, TOO_MANY, None)
    assert (await stack.codes.check(code, 1990, caller="sms:+84900000002")).valid
    # mistyped codes cost nothing: the check character answers them without a lookup
    for _ in range(3 * limits.caller_failures):
        assert (await stack.codes.check("VX7K-3D9Q-MRTO", 1990, caller="ip:10.9.9.9")).reason == CHECK_CODE
    assert (await stack.codes.check(code, 1990, caller="ip:10.9.9.9")).valid

    stack.clock.now += timedelta(hours=2)
    assert (await stack.codes.check(code, 1990, caller=guesser)).valid
    assert await stack.codes.cleanup() >= 1

    async with stack.service.sessions() as session:
        keys = (await session.scalars(select(CodeAttemptRow.key))).all()
    assert all(len(k) == 40 and "+84" not in k and "10.0" not in k for k in keys)  # hashed keys


async def test_collisions_and_concurrent_requests(stack: Stack) -> None:
    first = await stack.service.code_for(ANH, ANH_DOSES)
    drawn = iter([canonical(first), canonical(first), generate_code()])
    colliding = CertificateCodes(
        stack.service.sessions, stack.service, secrets=stack.codes.secrets, generate=lambda: next(drawn)
    )
    code = await colliding.code_for(BAO, BAO_DOSES)  # two draws hit the existing code, the third is free
    assert code != first and (await stack.codes.check(code, 1970)).valid

    other = Holder("p-chi", "001199009999", date(1999, 2, 2), "Lê Thị Chi")
    doses = (Dose(1, "EU/1/20/1507", date(2021, 11, 11), "MD-1", "HN002"),)
    results = await asyncio.gather(*(stack.service.code_for(other, doses) for _ in range(5)))
    assert len(set(results)) == 1
    async with stack.service.sessions() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(CertificateCodeRow)
            .where(CertificateCodeRow.person_id == other.id)
        )
    assert count == 1


def test_limits_are_sane() -> None:
    limits = GuessingLimits()
    # a guesser's chance to hit a live code is negligible: failures per caller per day ÷ code space
    per_day = limits.caller_failures * (timedelta(days=1) / (limits.caller_window + limits.caller_block))
    assert per_day / 31**11 < 1e-13
    assert math.log2(31**11) == pytest.approx(RANDOM_BITS)
    assert replace(limits, code_failures=3).code_failures == 3
