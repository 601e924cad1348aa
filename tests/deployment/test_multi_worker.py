"""Several worker processes on one PostgreSQL database and one Redis (README "Running several
workers"): the real service in subprocesses, the local Twilio stand-in, a fresh database and a
Redis key prefix of its own.

- Two single-worker servers on two ports, requests alternating between them: a USSD login whose
  steps land on different processes (session state and the one-time code are shared), menu
  navigation kept in Redis only, one-time-code brute force locked across processes (one guess at
  a time and many at once), and both outbox workers draining the same outbox without sending any
  message twice (FOR UPDATE SKIP LOCKED).
- `python main.py serve --workers 2`: two uvicorn workers behind one port, many concurrent
  callers logging in and reading their doses whichever worker answers.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest
import redis
from sqlalchemy import create_engine, select

from conversations.tables import ConversationSessionRow
from db.base import make_async_engine, make_sessionmaker
from db.migrate import migrate
from db.secret_keys import SecretKeys
from outbox.sealing import OutboxSeal
from outbox.store import OutboundMessage, Outbox
from registry_client.embedded.demo import DEMO_PEOPLE, load_demo, ordinary_people
from registry_client.embedded.registry import EmbeddedRegistry
from tests.conftest import PG_ADMIN_URL
from tests.fakes.twilio_api import SentMessage, TwilioStandIn

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
SECRET_KEY = "multi-worker-secret"  # one secret for every worker: codes, links, outbox seals
FROM_A, FROM_B = "+15005550006", "+15005550007"  # each server sends from its own number
AN, BINH, CUONG = DEMO_PEOPLE[0], DEMO_PEOPLE[1], DEMO_PEOPLE[2]


@dataclass
class Caller:
    phone: str
    national_id: str
    dob: str  # DDMMYYYY


def caller(person: object) -> Caller:
    return Caller(person.phone, person.national_id, person.date_of_birth.strftime("%d%m%Y"))  # type: ignore[attr-defined]


# -- fixtures -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    """A fresh PostgreSQL database with the demo identities and 40 ordinary citizens."""
    name = f"vaxmw_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = f"{PG_ADMIN_URL.rsplit('/', 1)[0].replace('postgresql://', 'postgresql+psycopg://', 1)}/{name}"
    migrate(url)

    async def load() -> None:
        engine = make_async_engine(url)
        await load_demo(EmbeddedRegistry(engine), ordinary=40)
        await engine.dispose()

    asyncio.run(load())
    yield url
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def redis_prefix() -> Iterator[str]:
    prefix = f"vaxtest{uuid.uuid4().hex[:10]}"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(f"{prefix}*", count=1000))  # also the 2-worker test's "-2w" keys
    if keys:
        client.delete(*keys)
    client.close()


class SlowTwilio(TwilioStandIn):
    """Twilio taking ~10 ms per message, so a batch keeps a worker busy and the other one claims
    the next rows meanwhile."""

    def _record(self, message: SentMessage) -> None:
        time.sleep(0.01)
        super()._record(message)


@pytest.fixture(scope="module")
def twilio() -> Iterator[TwilioStandIn]:
    with SlowTwilio() as standin:
        yield standin


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(command: list[str], env: dict[str, str], base: str, log: Path) -> subprocess.Popen[bytes]:
    """Starts a service; its log goes to a file (a pipe nobody reads would fill up and stall it)."""
    with log.open("ab") as sink:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"service did not start: {log.read_text()[-3000:]}")
        time.sleep(0.2)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


DATA_DIRS: dict[str, Path] = {}  # base URL -> the DATA_DIR of the service(s) answering there


def gateway_headers(base: str) -> dict[str, str]:
    """The USSD gateway's token: generated by the services into their shared DATA_DIR at start
    (the first of them to start wins; every worker reads the same file)."""
    return {"X-Gateway-Token": (DATA_DIRS[base] / "gateway_token").read_text().strip()}


def service_env(
    database: str, prefix: str, twilio: TwilioStandIn, port: int, public: str, sender: str, data: Path
) -> dict[str, str]:
    env = {
        **os.environ,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "DATABASE_URL": database,
        "REDIS_URL": REDIS_URL,
        "REDIS_KEY_PREFIX": prefix,
        "DATA_DIR": str(data),
        "PUBLIC_BASE_URL": public,
        "SECRET_KEY": SECRET_KEY,  # one secret for every worker: codes and links
        "TWILIO_ACCOUNT_SID": twilio.account_sid,
        "TWILIO_AUTH_TOKEN": twilio.auth_token,
        "TWILIO_FROM": sender,
        "TWILIO_API_BASE": twilio.base_url,
        "OUTBOX_POLL_SECONDS": "0.05",
    }
    env.pop("TELEGRAM_BOT_TOKEN", None)
    return env


@pytest.fixture(scope="module")
def two_servers(
    database: str, redis_prefix: str, twilio: TwilioStandIn, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """Two single-worker services (uvicorn, `app:app_from_environment`) on two ports."""
    data = tmp_path_factory.mktemp("shared-data")
    ports = free_port(), free_port()
    bases = tuple(f"http://127.0.0.1:{p}" for p in ports)
    processes = []
    try:
        for port, base, sender in zip(ports, bases, (FROM_A, FROM_B), strict=True):
            env = service_env(database, redis_prefix, twilio, port, bases[0], sender, data)
            DATA_DIRS[base] = data
            command = [sys.executable, "-m", "uvicorn", "app:app_from_environment", "--factory"]
            command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
            processes.append(start(command, env, base, data / f"service-{port}.log"))
        yield bases[0], bases[1]
    finally:
        for process in processes:
            stop(process)


# -- a phone that talks to whichever server it is told ------------------------------------------
class UssdPhone:
    def __init__(self, client: httpx.Client, phone: str) -> None:
        self.client, self.phone = client, phone
        self.session, self.inputs = "", []  # type: tuple[str, list[str]]

    def dial(self, base: str) -> str:
        self.session, self.inputs = f"ATUid_{uuid.uuid4().hex[:16]}", []
        return self._post(base)

    def send(self, base: str, text: str) -> str:
        self.inputs.append(text)
        return self._post(base)

    def _post(self, base: str) -> str:
        form = {
            "sessionId": self.session,
            "serviceCode": "*384*2021#",
            "phoneNumber": self.phone,
            "networkCode": "45204",
            "text": "*".join(self.inputs),
        }
        response = self.client.post(f"{base}/ussd", data=form, headers=gateway_headers(base))
        assert response.status_code == 200, response.text
        return response.text


def otp(twilio: TwilioStandIn, phone: str, after: int = 0) -> str:
    message = twilio.wait_for(to=phone, contains="ma xac thuc", timeout=15, after=after)
    code = re.search(r"\b(\d{6})\b", message.body)
    assert code is not None, message.body
    return code[1]


def ask_code(phone: UssdPhone, who: Caller, a: str, b: str) -> None:
    """dial on A, 1 on B, the ID on A, the date of birth on B: a code is sent."""
    assert phone.dial(a).startswith("CON Tiem chung COVID-19")
    assert phone.send(b, "1").startswith("CON Nhap so CCCD")
    assert phone.send(a, who.national_id).startswith("CON Nhap ngay sinh")
    assert "Ma 6 so da gui" in phone.send(b, who.dob)


# -- two servers, alternating ---------------------------------------------------------------------
def test_a_ussd_login_hops_between_workers(
    two_servers: tuple[str, str], twilio: TwilioStandIn, database: str, redis_prefix: str
) -> None:
    a, b = two_servers
    an = caller(AN)
    with httpx.Client(timeout=15) as client:
        phone = UssdPhone(client, an.phone)
        sent_before = len(twilio.messages)
        ask_code(phone, an, a, b)
        screen = phone.send(a, otp(twilio, an.phone, after=sent_before))  # the code sent by B, typed on A
        assert "Da xac thuc: Nguyen Van An" in screen and "Mui 1: AstraZeneca" in screen
        assert phone.send(b, "98").startswith("CON Mui 2: AstraZeneca")  # the next page lives on B too
        assert phone.send(a, "0").startswith("CON Tiem chung COVID-19")

        # a new session on the other worker: the binding holds, no login
        phone.dial(b)
        assert phone.send(a, "1").startswith("CON Nguyen Van An, CCCD 001******345")

        # menu navigation lives in Redis only: the SQL row does not move, the hot copy does
        engine = create_engine(database)
        try:
            with engine.connect() as conn:
                before = conn.execute(
                    select(ConversationSessionRow.updated_at).where(
                        ConversationSessionRow.channel == "ussd", ConversationSessionRow.address == an.phone
                    )
                ).scalar_one()
                phone.dial(a)
                assert phone.send(b, "5").startswith("CON Chon ngon ngu / Choose language")
                assert phone.send(a, "0").startswith("CON Tiem chung")
                after = conn.execute(
                    select(ConversationSessionRow.updated_at).where(
                        ConversationSessionRow.channel == "ussd", ConversationSessionRow.address == an.phone
                    )
                ).scalar_one()
        finally:
            engine.dispose()
        assert after == before
        hot = redis.Redis.from_url(REDIS_URL)
        try:
            assert hot.exists(f"{redis_prefix}:conv:ussd:{an.phone}")
        finally:
            hot.close()

        # a durable change (the language) made on one worker shows on the other
        phone.dial(a)
        phone.send(b, "5")
        assert phone.send(a, "2").startswith("CON Language: English.")
        assert phone.dial(b).startswith("CON COVID-19 vaccination")
        phone.send(a, "5")
        assert phone.send(b, "1").startswith("CON Da chon Tieng Viet.")


def test_one_time_code_guesses_are_counted_across_workers(
    two_servers: tuple[str, str], twilio: TwilioStandIn
) -> None:
    a, b = two_servers
    binh = caller(BINH)
    with httpx.Client(timeout=15) as client:
        phone = UssdPhone(client, binh.phone)
        sent_before = len(twilio.messages)
        ask_code(phone, binh, a, b)
        code = otp(twilio, binh.phone, after=sent_before)
        wrong = f"{(int(code) + 1) % 1_000_000:06d}"
        servers = [a, b, a, b]
        for left, server in zip((4, 3, 2, 1), servers, strict=True):
            assert f"Ma khong dung. Con {left} lan thu" in phone.send(server, wrong)
        assert "tam khoa" in phone.send(b, wrong)  # the fifth wrong guess, on the other worker
        phone.dial(a)
        screen = phone.send(a, "1")
        assert "Nhap so CCCD" in screen  # not logged in
        phone.send(b, binh.national_id)
        assert "tam khoa" in phone.send(a, binh.dob)  # no new code while locked, on either worker


def guess_verdict(screen: str) -> str:
    """A code guess's answer as "wrong, N left" or "locked"; any other screen is returned whole."""
    left = re.fullmatch(r"CON Ma khong dung\. Con (\d) lan thu\. Nhap lai:\n1 Gui lai ma\n0 Quay lai", screen)
    if left:
        return f"wrong, {left[1]} left"
    if screen == "CON Dang nhap tam khoa do nhap sai ma nhieu lan. Thu lai sau 15 phut.\n0 Menu chinh":
        return "locked"
    return screen


async def test_many_guesses_at_once_on_both_workers_are_locked_after_five(
    two_servers: tuple[str, str], twilio: TwilioStandIn
) -> None:
    a, b = two_servers
    cuong = caller(CUONG)
    with httpx.Client(timeout=15) as client:
        phone = UssdPhone(client, cuong.phone)
        sent_before = len(twilio.messages)
        ask_code(phone, cuong, a, b)
    code = await asyncio.to_thread(otp, twilio, cuong.phone, sent_before)
    guesses = [f"{(int(code) + n) % 1_000_000:06d}" for n in range(1, 17)]

    async def guess(client: httpx.AsyncClient, base: str, text: str) -> str:
        form = {  # a new session each: "7 enter code" and the code in one request
            "sessionId": f"ATUid_{uuid.uuid4().hex[:16]}",
            "serviceCode": "*384*2021#",
            "phoneNumber": cuong.phone,
            "networkCode": "45204",
            "text": f"7*{text}",
        }
        response = await client.post(f"{base}/ussd", data=form, headers=gateway_headers(base))
        assert response.status_code == 200
        return response.text

    async with httpx.AsyncClient(timeout=30) as client:
        answers = await asyncio.gather(
            *(guess(client, (a, b)[n % 2], text) for n, text in enumerate(guesses))
        )
        # every guess gets a definite answer: "wrong, N tries left" or "locked"; anything else (the
        # "system busy" reply the engine gives for any exception, a menu) fails the test
        verdicts = [guess_verdict(s) for s in answers]
        assert Counter(verdicts) == {
            "wrong, 4 left": 1,
            "wrong, 3 left": 1,
            "wrong, 2 left": 1,
            "wrong, 1 left": 1,
            "locked": 12,
        }, answers
        right = await guess(client, b, code)  # the right code now does not log in
        assert "Da xac thuc" not in right, right
    with httpx.Client(timeout=15) as client:  # and no new code for this person on either worker
        phone = UssdPhone(client, cuong.phone)
        phone.dial(a)
        phone.send(b, "1")
        phone.send(a, cuong.national_id)
        assert "tam khoa" in phone.send(b, cuong.dob)


async def test_both_outbox_workers_drain_one_outbox_without_a_double_send(
    two_servers: tuple[str, str], twilio: TwilioStandIn, database: str
) -> None:
    engine = make_async_engine(database)
    try:
        seal = OutboxSeal(SecretKeys.derive(SECRET_KEY).outbox_seal)  # the workers' key
        outbox = Outbox(make_sessionmaker(engine), seal=seal)
        run = uuid.uuid4().hex[:8]
        total = 300
        for n in range(total):
            await outbox.put(
                OutboundMessage(
                    channel="sms",
                    address=f"+8490{n % 10:01d}{n:06d}",
                    kind="notification",
                    text=f"bulk {run} #{n}",
                )
            )
        # the barrier: every row is acknowledged (sent or delivered) and none is pending or held by a
        # worker, so no send can still be on its way; only then are the arrivals counted
        deadline = time.monotonic() + 60
        depth = await outbox.depth()
        while time.monotonic() < deadline and (depth.get("pending") or depth.get("sending")):
            await asyncio.sleep(0.1)
            depth = await outbox.depth()
        assert set(depth) <= {"sent", "delivered"}, depth
        bulk = [m for m in twilio.messages if f"bulk {run} #" in m.body]
        bodies = Counter(m.body for m in bulk)
        assert len(bodies) == total, f"{len(bodies)} of {total} messages arrived"
        assert max(bodies.values()) == 1, [b for b, c in bodies.items() if c > 1][:5]
        assert len(bulk) == total
        senders = Counter(m.from_ for m in bulk)
        assert senders[FROM_A] > 0 and senders[FROM_B] > 0, senders  # both workers took part
    finally:
        await engine.dispose()


# -- two uvicorn workers behind one port ------------------------------------------------------------
async def test_two_uvicorn_workers_behind_one_port(
    database: str, redis_prefix: str, twilio: TwilioStandIn, tmp_path: Path
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = service_env(database, f"{redis_prefix}-2w", twilio, port, base, FROM_A, tmp_path / "data")
    DATA_DIRS[base] = tmp_path / "data"
    command = [sys.executable, "main.py", "serve", "--workers", "2", "--no-demo"]
    process = await asyncio.to_thread(start, command, env, base, tmp_path / "service.log")
    try:
        people = [caller(p) for p in _distinct_phones(8)]

        async def login_and_status(client: httpx.AsyncClient, who: Caller) -> str:
            session = f"ATUid_{uuid.uuid4().hex[:16]}"
            inputs: list[str] = []

            async def send(text: str | None) -> str:
                if text is not None:
                    inputs.append(text)
                form = {
                    "sessionId": session,
                    "serviceCode": "*384*2021#",
                    "phoneNumber": who.phone,
                    "networkCode": "45204",
                    "text": "*".join(inputs),
                }
                response = await client.post(f"{base}/ussd", data=form, headers=gateway_headers(base))
                assert response.status_code == 200, response.text
                return response.text

            sent_before = len(twilio.messages)
            await send(None)
            await send("1")
            await send(who.national_id)
            assert "Ma 6 so da gui" in await send(who.dob)
            code = await asyncio.to_thread(otp, twilio, who.phone, sent_before)
            assert "Da xac thuc" in await send(code)
            for _ in range(5):  # more sessions, each request landing on either worker
                session, inputs = f"ATUid_{uuid.uuid4().hex[:16]}", []
                await send(None)
                screen = await send("1")
                assert "CCCD" in screen and "Nhap so CCCD" not in screen, screen
                await send("0")
            return who.phone

        async with httpx.AsyncClient(timeout=30) as client:
            done = await asyncio.gather(*(login_and_status(client, who) for who in people))
        assert sorted(done) == sorted(p.phone for p in people)
    finally:
        await asyncio.to_thread(stop, process)


def _distinct_phones(count: int) -> list[object]:
    taken = {p.phone for p in DEMO_PEOPLE}
    chosen = []
    for person in ordinary_people(40):
        if person.phone not in taken:
            taken.add(person.phone)
            chosen.append(person)
        if len(chosen) == count:
            break
    return chosen
