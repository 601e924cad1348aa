"""Mixed load (issue 8): simulated USSD, SMS and Telegram users against the running service.

    python bench/load.py [--only sqlite-1,pgredis-2] [--seconds 10] [--users 24]

Configurations: `sqlite-1` (the embedded default: SQLite, one worker, no Redis) and `pgredis-2`
(PostgreSQL + Redis, two uvicorn workers); also `sqlite-N`, `postgres-N`, `pgredis-N`. The
service runs as a subprocess (`uvicorn app:app_from_environment`, uvloop + httptools) on a fresh
database with the demo identities; Twilio's REST API is the local stand-in (a thread here: the
one-time codes are read from it), the Telegram Bot API the local stand-in (a subprocess).

Users: phones already logged in on each channel, and fresh identities for login journeys.
Journeys (weights in MIX): USSD status (dial, 1, 98, 0), certificate link (dial, 2), report
(dial, 3 and the answers), login (dial, 1, ID, DOB, the code from the SMS); SMS `MUI`, `QR`,
`PA`…, `DK ID DOB` + code (signed Twilio webhooks); Telegram /status, /certificate (the QR photo
is sent to the Bot API), /report…, login. A user runs one journey at a time.

Phases per configuration, each `--seconds` long:
1. ceiling: the bare FastAPI app (a constant `CON` screen) under the same uvicorn setup and
   worker count, closed loop with `--users` connections;
2. USSD only, closed loop with `--users` callers: USSD requests/s as a share of the ceiling;
3. peak: the whole mix, closed loop with `--users` virtual users;
4. 70 %: the whole mix, open loop: journeys start as a Poisson process at 70 % of the peak's
   request rate, whatever the answers' speed.
Printed: throughput, error rate, and p50/p95/p99 per endpoint for each phase.
Goals: zero errors; p99 < 100 ms at 70 % of peak; USSD >= 40 % of the ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.service import (  # noqa: E402
    GATEWAY_HEADERS,
    GATEWAY_TOKEN,
    REDIS_URL,
    ROOT,
    distinct_phone_people,
    free_port,
    pg_copy,
    pg_drop,
    pg_template,
    redis_flush,
    service_command,
    sqlite_template,
    start_bare,
    start_server,
    stop_server,
)
from bot.simulated_updates import SimulatedUser  # noqa: E402
from registry_client.embedded.demo import DemoPerson  # noqa: E402
from tests.fakes.twilio_api import TwilioStandIn  # noqa: E402

ORDINARY = 600  # citizens in the database (bound users + fresh identities for login journeys)
WEBHOOK_SECRET = "load-bench-secret"
BOT_TOKEN = "7000000001:load-bench"
TWIML_MESSAGE = re.compile(r"<Message>(.*?)</Message>", re.S)

MIX = {  # journey → weight
    "ussd_status": 28,
    "ussd_certificate": 6,
    "ussd_report": 2,
    "ussd_login": 4,
    "sms_status": 14,
    "sms_certificate": 4,
    "sms_report": 1,
    "sms_login": 3,
    "telegram_status": 14,
    "telegram_certificate": 4,
    "telegram_report": 1,
    "telegram_login": 3,
}
USSD_ONLY = {"ussd_status": 8, "ussd_certificate": 2}
REPORT_ANSWERS = ["1", "3", "15082021", "HN001", "2", "Cong ty May 10", "1", "1"]


# -- figures ------------------------------------------------------------------------------------------
@dataclass
class Phase:
    name: str
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    samples: list[str] = field(default_factory=list)  # a few failing answers, to show
    wall: float = 0.0
    journeys: int = 0
    dropped: int = 0  # open loop: arrivals with no free user

    def record(self, endpoint: str, seconds: float, ok: bool, answer: str = "") -> None:
        self.latencies[endpoint].append(seconds)
        if not ok:
            self.errors[endpoint] += 1
            if len(self.samples) < 5:
                self.samples.append(f"{endpoint}: {answer[:160]!r}")

    def fail(self, what: str, why: str) -> None:
        """An error that is not an answer (e.g. an SMS that never came)."""
        self.errors[what] += 1
        if len(self.samples) < 5:
            self.samples.append(f"{what}: {why}")

    @property
    def requests(self) -> int:
        return sum(len(v) for v in self.latencies.values())

    @property
    def rps(self) -> float:
        return self.requests / self.wall if self.wall else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def pct(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000


def print_phase(phase: Phase) -> None:
    share = f"{phase.error_count / phase.requests:.2%}" if phase.requests else "-"
    extra = f", {phase.dropped} arrivals found no free user" if phase.dropped else ""
    print(
        f"  {phase.name:<34} {phase.rps:8.1f} req/s  {phase.requests:6d} req  "
        f"errors {phase.error_count} ({share}){extra}"
    )
    endpoints = sorted(phase.latencies) + (["all"] if len(phase.latencies) > 1 else [])
    for endpoint in endpoints:
        values = (
            [v for vs in phase.latencies.values() for v in vs]
            if endpoint == "all"
            else phase.latencies[endpoint]
        )
        errors = phase.error_count if endpoint == "all" else phase.errors.get(endpoint, 0)
        print(
            f"      {endpoint:<20} n {len(values):6d}  p50 {pct(values, 50):7.1f}  p95 {pct(values, 95):7.1f}  "
            f"p99 {pct(values, 99):7.1f} ms  errors {errors}"
        )
    for sample in phase.samples:
        print(f"      failed: {sample}")


# -- the clients ------------------------------------------------------------------------------------------
Expect = str | tuple[str, ...] | None


def expected(expect: Expect, text: str) -> bool:
    """The answer contains the expected text (or one of them)."""
    if expect is None:
        return True
    return any(e in text for e in ((expect,) if isinstance(expect, str) else expect))


@dataclass
class Target:
    base: str
    twilio: TwilioStandIn
    http: aiohttp.ClientSession
    phase: Phase


async def _post(target: Target, endpoint: str, check: Callable[[int, str], bool], **kw: object) -> str:
    started = time.perf_counter()
    status, text = 0, ""
    try:
        async with target.http.post(target.base + endpoint, **kw) as response:  # type: ignore[arg-type]
            status, text = response.status, await response.text()
    except (TimeoutError, aiohttp.ClientError) as exc:
        text = f"{type(exc).__name__}: {exc}"
    target.phase.record(endpoint, time.perf_counter() - started, check(status, text), f"[{status}] {text}")
    return text


class Ussd:
    def __init__(self, target: Target, phone: str) -> None:
        self.target, self.phone = target, phone
        self.session, self.inputs = "", []  # type: tuple[str, list[str]]

    async def post(self, expect: Expect = None) -> str:
        form = {
            "sessionId": self.session,
            "serviceCode": "*384*2021#",
            "phoneNumber": self.phone,
            "networkCode": "45204",
            "text": "*".join(self.inputs),
        }

        def check(status: int, text: str) -> bool:
            return status == 200 and text.startswith(("CON ", "END ")) and expected(expect, text)

        return await _post(self.target, "/ussd", check, data=form, headers=GATEWAY_HEADERS)

    async def dial(self) -> str:
        self.session, self.inputs = f"ATUid_{uuid.uuid4().hex[:20]}", []
        return await self.post("Tiem chung")

    async def send(self, text: str, expect: Expect = None) -> str:
        self.inputs.append(text)
        return await self.post(expect)


class Sms:
    def __init__(self, target: Target, phone: str, signer: Callable[[dict[str, str]], str]) -> None:
        self.target, self.phone, self.sign = target, phone, signer

    async def send(self, body: str, expect: Expect = None) -> str:
        params = {
            "MessageSid": "SM" + uuid.uuid4().hex,
            "AccountSid": self.target.twilio.account_sid,
            "From": self.phone,
            "To": self.target.twilio.from_number,
            "Body": body,
            "NumMedia": "0",
        }

        def check(status: int, text: str) -> bool:
            found = TWIML_MESSAGE.search(text)
            return status == 200 and found is not None and expected(expect, found[1])

        return await _post(
            self.target, "/sms/twilio", check, data=params, headers={"X-Twilio-Signature": self.sign(params)}
        )


UPDATE_IDS = itertools.count(int(time.time() * 1000) % 2**40)


class Telegram:
    def __init__(self, target: Target, phone: str) -> None:
        self.target = target
        self.user = SimulatedUser(phone)
        self.user._update_ids = UPDATE_IDS  # unique across every simulated user of the run

    async def send(self, text: str) -> str:
        def check(status: int, body: str) -> bool:
            return status == 200 and '"ok":true' in body.replace(" ", "")

        return await _post(
            self.target,
            "/telegram/webhook",
            check,
            data=json.dumps(self.user.text(text)),
            headers={"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET},
        )


async def one_time_code(target: Target, phone: str, after: int) -> str:
    """The code that reached the Twilio stand-in ("000000", counted as an error, if none came)."""
    try:
        message = await target.twilio.wait_for_async(to=phone, contains="ma xac thuc", timeout=20, after=after)
    except AssertionError:
        target.phase.fail("one-time code by SMS", f"no code reached {phone} within 20 s")
        return "000000"
    found = re.search(r"\b(\d{6})\b", message.body)
    return found[1] if found else "000000"


# -- journeys ---------------------------------------------------------------------------------------------
@dataclass
class Users:
    """Logged-in users per channel (each runs one journey at a time) and fresh login identities."""

    bound: dict[str, asyncio.Queue[DemoPerson]]
    fresh: list[DemoPerson]
    signer: Callable[[dict[str, str]], str]


def dob(person: DemoPerson) -> str:
    return person.date_of_birth.strftime("%d%m%Y")


async def ussd_login(target: Target, who: DemoPerson, signer: object = None) -> None:
    phone = Ussd(target, who.phone)
    await phone.dial()
    await phone.send("1", "Nhap so CCCD")
    await phone.send(who.national_id, "ngay sinh")
    sent = len(target.twilio.messages)
    await phone.send(dob(who), "Ma 6 so")
    await phone.send(await one_time_code(target, who.phone, sent), "Da xac thuc")


async def sms_login(target: Target, who: DemoPerson, signer: Callable[[dict[str, str]], str]) -> None:
    phone = Sms(target, who.phone, signer)
    sent = len(target.twilio.messages)
    await phone.send(f"DK {who.national_id} {dob(who)}", "Ma 6 so")
    await phone.send(await one_time_code(target, who.phone, sent), "Da xac thuc")


async def telegram_login(target: Target, who: DemoPerson, signer: object = None) -> None:
    chat = Telegram(target, who.phone)
    await chat.send("/status")
    await chat.send(who.national_id)
    sent = len(target.twilio.messages)
    await chat.send(dob(who))
    await chat.send(await one_time_code(target, who.phone, sent))


async def run_journey(name: str, target: Target, users: Users) -> None:
    target.phase.journeys += 1
    channel, _, action = name.partition("_")
    if action == "login":
        if not users.fresh:
            return
        who = users.fresh.pop()
        await {"ussd": ussd_login, "sms": sms_login, "telegram": telegram_login}[channel](
            target, who, users.signer
        )
        return
    who = await users.bound[channel].get()
    try:
        if channel == "ussd":
            phone = Ussd(target, who.phone)
            await phone.dial()
            if action == "status":
                await phone.send("1", "CCCD")
                await phone.send("98")
                await phone.send("0")
            elif action == "certificate":
                await phone.send("2", ("Link chung nhan", "Chua co mui"))
            else:
                await phone.send("3", "Ban muon bao")
                for answer in REPORT_ANSWERS[:-1]:
                    await phone.send(answer)
                await phone.send(REPORT_ANSWERS[-1], ("Da nhan phan anh", "Ban da co phan anh"))
        elif channel == "sms":
            sms = Sms(target, who.phone, users.signer)
            if action == "status":
                await sms.send("MUI", "CCCD")
            elif action == "certificate":
                await sms.send("QR", ("Link chung nhan", "Chua co mui"))
            else:
                await sms.send("PA", "Ban muon bao")
                for answer in REPORT_ANSWERS[:-1]:
                    await sms.send(answer)
                await sms.send(REPORT_ANSWERS[-1], ("Da nhan phan anh", "Ban da co phan anh"))
        else:
            chat = Telegram(target, who.phone)
            if action == "status":
                await chat.send("/status")
            elif action == "certificate":
                await chat.send("/certificate")
            else:
                await chat.send("/report")
                for answer in REPORT_ANSWERS:
                    await chat.send(answer)
    finally:
        users.bound[channel].put_nowait(who)


def pick(mix: dict[str, int], rng: random.Random) -> str:
    return rng.choices(list(mix), weights=list(mix.values()))[0]


async def closed_loop(target: Target, users: Users, mix: dict[str, int], count: int, seconds: float) -> None:
    rng = random.Random(7)
    stop_at = time.perf_counter() + seconds

    async def virtual_user() -> None:
        while time.perf_counter() < stop_at:
            await run_journey(pick(mix, rng), target, users)

    started = time.perf_counter()
    await asyncio.gather(*(virtual_user() for _ in range(count)))
    target.phase.wall = time.perf_counter() - started


async def open_loop(
    target: Target, users: Users, mix: dict[str, int], rps: float, per_journey: float, seconds: float
) -> None:
    """Journeys start as a Poisson process at `rps / per_journey` a second."""
    rng = random.Random(11)
    rate = rps / per_journey
    tasks: set[asyncio.Task[None]] = set()
    started = time.perf_counter()
    next_at = started
    while next_at < started + seconds:
        next_at += rng.expovariate(rate)
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        name = pick(mix, rng)
        channel = name.partition("_")[0]
        if not name.endswith("_login") and users.bound[channel].empty():
            target.phase.dropped += 1
            continue
        task = asyncio.create_task(run_journey(name, target, users))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks)
    target.phase.wall = seconds  # arrivals stopped after `seconds`; the rate is what was offered


# -- one configuration ------------------------------------------------------------------------------------
def start_bot_api(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    """The Telegram Bot API stand-in in its own process (its work must not slow the clients)."""
    port = free_port()
    script = (
        f"import sys, time; sys.path.insert(0, {str(ROOT)!r})\n"
        "from bot.local_bot_api import LocalBotApi\n"
        f"api = LocalBotApi(port={port}).start()\n"
        "print('ready', flush=True)\n"
        "import os; os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # nobody reads the pipe any more\n"
        "while True: time.sleep(3600)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    assert process.stdout is not None and process.stdout.readline().strip() == b"ready"
    return process, f"http://127.0.0.1:{port}"


async def measure_bare(port: int, users: int, seconds: float) -> Phase:
    phase = Phase("ceiling: bare FastAPI POST /ussd")
    form = {"sessionId": "x", "serviceCode": "*384*2021#", "phoneNumber": "+84901234567", "text": "1"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=users)) as http:
        target = Target(f"http://127.0.0.1:{port}", None, http, phase)  # type: ignore[arg-type]
        stop_at = time.perf_counter() + seconds

        async def caller() -> None:
            while time.perf_counter() < stop_at:
                await _post(
                    target, "/ussd", lambda s, t: s == 200 and t.startswith("CON "), data=form, headers=GATEWAY_HEADERS
                )

        started = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(users)))
        phase.wall = time.perf_counter() - started
    return phase


async def log_in_everyone(target: Target, users: Users, people: dict[str, list[DemoPerson]]) -> None:
    logins = {"ussd": ussd_login, "sms": sms_login, "telegram": telegram_login}
    for channel, persons in people.items():
        await asyncio.gather(*(logins[channel](target, who, users.signer) for who in persons))
        for who in persons:
            users.bound[channel].put_nowait(who)


async def wait_for_telegram(base: str, http: aiohttp.ClientSession) -> None:
    """The Telegram channel answers 503 until it has connected to the Bot API."""
    probe = Telegram(Target(base, None, http, Phase("probe")), "+84900000001")  # type: ignore[arg-type]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if '"ok":true' in (await probe.send("/help")).replace(" ", ""):
            return
        await asyncio.sleep(0.2)
    raise SystemExit("the Telegram channel did not get ready")


async def drive(
    base: str, twilio: TwilioStandIn, args: argparse.Namespace, label: str, ceiling: Phase
) -> None:
    from twilio.request_validator import RequestValidator

    validator = RequestValidator(twilio.auth_token)
    signed_url = base + "/sms/twilio"
    everyone = distinct_phone_people(args.users * 3 + 300, pool=ORDINARY)
    bound = {
        "ussd": everyone[: args.users],
        "sms": everyone[args.users : 2 * args.users],
        "telegram": everyone[2 * args.users : 3 * args.users],
    }
    users = Users(
        {c: asyncio.Queue() for c in bound},
        list(reversed(everyone[3 * args.users :])),
        lambda p: validator.compute_signature(signed_url, p),
    )
    connector = aiohttp.TCPConnector(limit=400)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as http:
        await wait_for_telegram(base, http)
        warm = Phase("log in the users")
        await log_in_everyone(Target(base, twilio, http, warm), users, bound)
        print_phase(warm)

        ussd = Phase("USSD only, closed loop")
        await closed_loop(Target(base, twilio, http, ussd), users, USSD_ONLY, args.users, args.seconds)
        peak = Phase("peak: mix, closed loop")
        await closed_loop(Target(base, twilio, http, peak), users, MIX, args.users, args.seconds)
        per_journey = peak.requests / peak.journeys if peak.journeys else 4.0
        offered = 0.7 * peak.rps
        seventy = Phase(f"70 %: mix, open loop at {offered:.0f} req/s")
        await open_loop(Target(base, twilio, http, seventy), users, MIX, offered, per_journey, args.seconds)

    print(f"\n== {label} ==")
    print_phase(ceiling)
    for phase in (ussd, peak, seventy):
        print_phase(phase)
    all_70 = [v for vs in seventy.latencies.values() for v in vs]
    ratio = ussd.rps / ceiling.rps if ceiling.rps else 0.0
    errors = warm.error_count + ussd.error_count + peak.error_count + seventy.error_count
    print(
        f"  goals: errors {errors} ({'OK' if errors == 0 else 'NOT MET'}); "
        f"p99 at 70 % {pct(all_70, 99):.1f} ms ({'OK' if pct(all_70, 99) < 100 else 'NOT MET'}, < 100 ms); "
        f"USSD {ratio:.1%} of the ceiling ({'OK' if ratio >= 0.4 else 'NOT MET'}, >= 40 %)",
        flush=True,
    )


def run_configuration(
    db: str, workers: int, args: argparse.Namespace, tmp: Path, templates: dict[str, object]
) -> None:
    pg_name = None
    if db == "sqlite":
        path = tmp / f"load-{uuid.uuid4().hex[:6]}.db"
        shutil.copy(templates["sqlite"], path)  # type: ignore[arg-type]
        url = f"sqlite:///{path}"
    else:
        pg_name, url = pg_copy(templates["postgres"])  # type: ignore[arg-type]
    prefix = f"vaxload{uuid.uuid4().hex[:8]}"
    label = {
        "sqlite": f"SQLite, {workers} worker(s), no Redis",
        "postgres": f"PostgreSQL, {workers} worker(s), no Redis",
        "pgredis": f"PostgreSQL + Redis, {workers} worker(s)",
    }[db]

    bare, bare_port = start_bare(workers, tmp)
    try:
        ceiling = asyncio.run(measure_bare(bare_port, args.users, args.seconds))
    finally:
        stop_server(bare)

    bot_api, bot_base = start_bot_api(tmp)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    try:
        with TwilioStandIn() as twilio:
            env = {
                **os.environ,
                "DATABASE_URL": url,
                "DATA_DIR": str(tmp / f"data-{db}-{workers}"),
                "PUBLIC_BASE_URL": base,
                "SECRET_KEY": "load-bench-secret",
                "USSD_GATEWAY_TOKEN": GATEWAY_TOKEN,
                "TWILIO_ACCOUNT_SID": twilio.account_sid,
                "TWILIO_AUTH_TOKEN": twilio.auth_token,
                "TWILIO_FROM": twilio.from_number,
                "TWILIO_API_BASE": twilio.base_url,
                "TELEGRAM_BOT_TOKEN": BOT_TOKEN,
                "TELEGRAM_API_BASE": bot_base,
                "TELEGRAM_MODE": "webhook",
                "TELEGRAM_WEBHOOK_SECRET": WEBHOOK_SECRET,
                "OUTBOX_POLL_SECONDS": "0.2",
            }
            env.pop("REDIS_URL", None)
            if db == "pgredis":
                env.update(REDIS_URL=REDIS_URL, REDIS_KEY_PREFIX=prefix)
            server = start_server(service_command(workers), env, port)
            try:
                asyncio.run(drive(base, twilio, args, label, ceiling))
            finally:
                stop_server(server)
    finally:
        bot_api.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            bot_api.wait(timeout=10)
        if pg_name:
            pg_drop(pg_name)
        if db == "pgredis":
            redis_flush(REDIS_URL, prefix)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="sqlite-1,pgredis-2")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
    parser.add_argument("--users", type=int, default=24, help="closed-loop users / bound users per channel")
    args = parser.parse_args()
    wanted = [(db, int(n)) for db, n in (x.split("-") for x in args.only.split(","))]
    print(
        f"mixed load, {args.seconds:g} s per phase, {args.users} closed-loop users; machine: "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        templates: dict[str, object] = {"sqlite": sqlite_template(tmp, ORDINARY)}
        if any(db != "sqlite" for db, _ in wanted):
            templates["postgres"] = pg_template(ORDINARY)
        try:
            for db, workers in wanted:
                run_configuration(db, workers, args, tmp, templates)
        finally:
            if "postgres" in templates:
                pg_drop(templates["postgres"])  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
