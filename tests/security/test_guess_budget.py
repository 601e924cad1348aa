"""Guesses are a budget, whatever carries them: one USSD request holding hundreds of inputs,
dozens of requests at once, on SQLite and on PostgreSQL with Redis counters.

Each test sends the attack through the real routes (`/ussd`, `/sms/twilio`, `/api/verify-code`)
of the running service and counts what the attacker got: dates of birth actually compared by the
registry, one-time codes queued to the victim's phone, birth years compared for a certificate code.
Then the honest owner still gets in, where the limit allows or once the block is over (the
service's clock moved; Redis windows run on real time, so the clock-moved parts run on SQL).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from conversations.flows.login import ID_MISS_LIMIT, NOT_FOUND_LIMIT
from conversations.otp import MAX_WRONG
from conversations.wiring import build_conversations
from registry_client.clock import utc_now
from tests.conversations.conftest import demo_template  # noqa: F401 - shared session fixture
from tests.faults.conftest import demo_db, pg_demo  # noqa: F401 - shared fixtures
from tests.faults.service import AN, Service, base_settings, expected, expected_start, flat, running

AN_BORN = date(1985, 3, 14)
REDIS_URL = "redis://127.0.0.1:6379/0"


class SkippingClock:
    """Real time plus what the test skipped."""

    def __init__(self) -> None:
        self.skipped = timedelta()

    def __call__(self) -> Any:
        return utc_now() + self.skipped

    def skip(self, **delta: float) -> None:
        self.skipped += timedelta(**delta)


@dataclass
class Setup:
    service: Service
    clock: SkippingClock
    backend: str
    compared: list[tuple[str, date]]  # every (national ID, date of birth) the registry compared

    @property
    def sql_clock(self) -> bool:
        """Whether every counter follows the service clock (Redis counts in real time)."""
        return self.backend == "sqlite"


@pytest.fixture(params=["sqlite", "postgres+redis"])
def backend(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(backend, database URL with the demo identities)."""
    fixture = "demo_db" if request.param == "sqlite" else "pg_demo"
    return request.param, request.getfixturevalue(fixture)


@pytest.fixture
async def setup(backend: tuple[str, str], tmp_path: Path) -> AsyncIterator[Setup]:
    name, url = backend
    redis = {"redis_url": REDIS_URL, "redis_key_prefix": f"vaxtest-{uuid.uuid4().hex[:8]}"}
    settings = base_settings(url, tmp_path / "data", **(redis if name != "sqlite" else {}))
    clock = SkippingClock()
    compared: list[tuple[str, date]] = []

    async with running(settings, prepare=counting_on(clock, compared)) as service:
        yield Setup(service, clock, name, compared)


def counting_on(clock: SkippingClock, compared: list[tuple[str, date]]) -> Any:
    """A `running(prepare=…)` hook: the engine and the certificate codes on `clock`, and every
    date of birth the registry compares appended to `compared`."""

    async def prepare(app: Any) -> None:
        app.state.conversations = build_conversations(app.state.settings, app.state, clock=clock)
        app.state.certificates.codes.clock = clock
        registry = app.state.conversations.services.registry
        find_person = registry.find_person

        async def counted(national_id: str, date_of_birth: date) -> Any:
            compared.append((national_id, date_of_birth))
            return await find_person(national_id, date_of_birth)

        registry.find_person = counted  # the real lookup, counted

    return prepare


def wrong_birthdays(count: int) -> list[str]:
    days = [AN_BORN + timedelta(days=n) for n in range(1, count + 1)]
    return [d.strftime("%d%m%Y") for d in days]


def dob_sweep(count: int) -> list[str]:
    """Menu 1 (status) asks to log in; then ID, date of birth, ID, date of birth, …, the right one
    last: each "no record" answer asks for the ID again."""
    inputs = ["1"]
    for born in wrong_birthdays(count):
        inputs += [AN[1], born]
    return [*inputs, AN[1], AN[2]]


async def one_request(service: Service, phone: str, inputs: list[str]) -> str:
    """A new USSD session whose very first request carries all of `inputs`."""
    caller = service.ussd(phone)
    caller.session_id, caller.inputs = "ATUid_" + uuid.uuid4().hex[:16], inputs[:-1]
    return flat(await caller.send(inputs[-1]))


async def log_in_by_sms(service: Service, phone: str) -> str:
    sms = service.sms(phone)
    sent = await sms.send(f"DK {AN[1]} {AN[2]}")
    assert sent.startswith(expected("login.code_sent")), sent
    return await sms.send(await service.last_code(AN[0]))


async def test_one_ussd_request_with_323_birthdays_gets_the_callers_five(setup: Setup) -> None:
    service = setup.service
    inputs = dob_sweep(323)
    assert 7000 < len("*".join(inputs)) < 8192

    screen = await one_request(service, "+84900000801", inputs)

    assert expected("login.code_sent")[:30] not in screen, screen
    assert len(setup.compared) == NOT_FOUND_LIMIT  # the rest of the request was refused unseen
    assert await service.outbox_to(AN[0], "otp") == []
    # another session of the same phone: still refused, nothing compared
    again = await one_request(service, "+84900000801", ["1", AN[1], AN[2]])
    assert again.startswith("CON " + expected_start("login.not_found_limited")), again
    assert len(setup.compared) == NOT_FOUND_LIMIT

    # the owner, on their own phone, is within the ID's budget (5 of 10 used)
    assert (await log_in_by_sms(service, AN[0])).startswith(expected("login.success", name="Nguyen Van An"))


async def test_birthday_sweeps_from_many_phones_stop_at_the_ids_ten(setup: Setup) -> None:
    service = setup.service
    for n in range(4):
        screen = await one_request(service, f"+8490000082{n}", dob_sweep(323))
        assert expected("login.code_sent")[:30] not in screen, screen
    assert len(setup.compared) == ID_MISS_LIMIT
    assert await service.outbox_to(AN[0], "otp") == []
    refused = await service.sms(AN[0]).send(f"DK {AN[1]} {AN[2]}")  # the owner too, for the hour
    assert refused.startswith(expected_start("login.not_found_limited")), refused
    assert len(setup.compared) == ID_MISS_LIMIT
    if not setup.sql_clock:
        return
    setup.clock.skip(minutes=61)
    assert (await log_in_by_sms(service, AN[0])).startswith(expected("login.success", name="Nguyen Van An"))


async def test_back_and_resend_repeats_in_one_request_send_one_code(setup: Setup) -> None:
    service = setup.service
    cycle = ["1", AN[1], AN[2], "1", "0"]  # log in, "resend", back to the menu
    screen = await one_request(service, "+84900000831", cycle * 20)
    assert len(await service.outbox_to(AN[0], "otp")) == 1, screen
    # a second request of the same session with 20 more cycles: still within the minute
    caller = service.ussd("+84900000832")
    await caller.dial()
    for _ in range(2):
        caller.inputs += cycle * 20
        await caller.send("1")
    assert len(await service.outbox_to(AN[0], "otp")) == 1
    if setup.sql_clock:
        setup.clock.skip(seconds=61)
        assert (await log_in_by_sms(service, AN[0])).startswith(
            expected("login.success", name="Nguyen Van An")
        )


async def test_thirty_concurrent_dk_send_exactly_one_code(setup: Setup) -> None:
    service = setup.service
    phones = [f"+849000008{40 + n}" for n in range(30)]
    replies = await asyncio.gather(*(service.sms(p).send(f"DK {AN[1]} {AN[2]}") for p in phones))
    assert len(await service.outbox_to(AN[0], "otp")) == 1, replies
    assert sum(r.startswith(expected("login.code_sent")) for r in replies) == 1, replies
    # right answers, however many at once, spend nothing and block nobody
    counters = service.state.conversations.services.counters
    assert await counters.read(f"notfound-id:{AN[1]}", timedelta(hours=1)) == (0, 0)
    if setup.sql_clock:
        setup.clock.skip(seconds=61)  # the next code may go out a minute later
        assert (await log_in_by_sms(service, AN[0])).startswith(
            expected("login.success", name="Nguyen Van An")
        )


async def test_an_honest_callers_typos_do_not_lock_them_out(setup: Setup) -> None:
    service = setup.service
    sms = service.sms(AN[0])
    for born in wrong_birthdays(NOT_FOUND_LIMIT - 1):
        assert (await sms.send(f"DK {AN[1]} {born}")).startswith(expected("login.not_found"))
    assert (await log_in_by_sms(service, AN[0])).startswith(expected("login.success", name="Nguyen Van An"))
    counters = service.state.conversations.services.counters
    assert await counters.read(f"notfound:sms:{AN[0]}", timedelta(minutes=15)) == (NOT_FOUND_LIMIT - 1, 0)


async def test_code_guesses_in_one_request_stop_at_five(setup: Setup) -> None:
    service = setup.service
    caller = service.ussd("+84900000871")
    await caller.dial()
    assert flat(await caller.answers("1", AN[1], AN[2])).startswith("CON " + expected("login.code_sent"))
    right = await service.last_code(AN[0])
    guesses = [f"{(int(right) + 1 + n * 7919) % 10**6:06d}" for n in range(60)]
    assert right not in guesses
    caller.inputs += guesses
    screen = flat(await caller.send(right))  # the right code last, in the same request
    assert expected("login.success", name="Nguyen Van An") not in screen, screen
    assert await service.state.conversations.bindings.persons_for("ussd", caller.phone) == []
    person = await service.state.registry.find_person(AN[1], AN_BORN)
    assert await service.state.conversations.services.otp.lock_seconds(person.id) > 0
    if setup.sql_clock:
        setup.clock.skip(minutes=16)
        assert (await log_in_by_sms(service, AN[0])).startswith(
            expected("login.success", name="Nguyen Van An")
        )
    assert MAX_WRONG == 5


async def certificate_code(service: Service) -> str:
    registry = service.state.registry
    person = await registry.find_person(AN[1], AN_BORN)
    doses = await registry.list_doses(person.id)
    return str(await service.state.certificates.codes.code_for(person, doses))


async def test_concurrent_certificate_code_guesses_get_five_comparisons(setup: Setup) -> None:
    service = setup.service
    code = await certificate_code(service)
    limit = service.state.certificates.codes.limits.code_failures
    years = [1950 + n for n in range(30)]
    assert AN_BORN.year not in years

    answers = await asyncio.gather(
        *(service.client.post("/api/verify-code", json={"code": code, "birth_year": y}) for y in years)
    )
    compared = [a for a in answers if a.status_code == 200]
    assert len(compared) == limit, [(a.status_code, a.json()["reason"]) for a in answers]
    assert all(a.json()["reason"].startswith("unknown") for a in compared)
    assert {a.status_code for a in answers if a not in compared} == {429}
    assert all(a.json()["holder"]["name"] == "" for a in answers)

    # an honest checkpoint (another address) with the right year: the code is locked for the hour
    transport = httpx.ASGITransport(app=service.app, client=("203.0.113.7", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as checkpoint:
        body = {"code": code, "birth_year": AN_BORN.year}
        right = await checkpoint.post("/api/verify-code", json=body)
        assert right.status_code == 429 and right.json()["reason"].startswith("locked"), right.json()
        setup.clock.skip(minutes=61)  # the certificate-code counters are SQL rows: the clock rules
        right = await checkpoint.post("/api/verify-code", json=body)
        assert right.status_code == 200 and right.json()["valid"] is True, right.json()


async def test_two_workers_share_every_budget(setup: Setup) -> None:
    """A second service process on the same database (and Redis): the attacks split across both
    get no more than against one."""
    first = setup.service
    async with running(first.settings, prepare=counting_on(setup.clock, setup.compared)) as second:
        workers = (first, second)
        sweeps = [one_request(workers[n % 2], f"+8490000090{n}", dob_sweep(323)) for n in range(4)]
        screens = await asyncio.gather(*sweeps)
        assert not any(expected("login.code_sent")[:30] in screen for screen in screens), screens
        assert len(setup.compared) == ID_MISS_LIMIT
        assert await first.outbox_to(AN[0], "otp") == []

        code = await certificate_code(first)
        guesses = [
            workers[n % 2].client.post("/api/verify-code", json={"code": code, "birth_year": 1950 + n})
            for n in range(30)
        ]
        answers = await asyncio.gather(*guesses)
        limit = first.state.certificates.codes.limits.code_failures
        assert sum(a.status_code == 200 for a in answers) == limit
        assert {a.status_code for a in answers} == {200, 429}
