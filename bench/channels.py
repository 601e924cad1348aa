"""USSD channel benchmark (issue 4): concurrent simulated callers against the real service.

    /work/venv/bin/python bench/channels.py [--callers 20] [--sessions 6] [--only sqlite-1,...]

Each simulated caller is one demo citizen on their own registered phone. It logs in over USSD
(dial → 1 → national ID → date of birth → the one-time code, which arrives by SMS at the local
Twilio stand-in through the real outbox worker → the doses), then runs `--sessions` more USSD
sessions (dial → 1 doses → 98 next page → 0 menu), exactly the Africa's Talking form posts a
gateway sends. The service runs as uvicorn (`app:app_from_environment`, 1 and 2 workers, access
log off) on a fresh SQLite file and on a fresh PostgreSQL database. In the same run, a bare
FastAPI app answering every POST /ussd with a constant `CON` screen gets the same request
pattern from the same client: the ceiling of this stack on this machine.

Printed per configuration: requests, requests/s, p50 and p99 latency (ms), and the ratio of
requests/s to the bare endpoint with the same worker count. Goal: >= 40 % and p99 < 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from db.base import make_async_engine  # noqa: E402
from db.migrate import migrate  # noqa: E402
from registry_client.embedded.demo import ordinary_people  # noqa: E402
from tests.fakes.twilio_api import TwilioStandIn  # noqa: E402

PG_ADMIN = os.environ.get("BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/test")
BARE_APP = """
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

app = FastAPI()
SCREEN = ("CON Tiem chung COVID-19\\n1 Mui da tiem\\n2 Link chung nhan\\n3 Bao thieu/sai mui\\n"
          "4 Xem phan anh\\n5 Ngon ngu/Language\\n6 Kiem tra ma chung nhan\\n0 Tong dai")

@app.post("/ussd")
async def ussd() -> PlainTextResponse:
    return PlainTextResponse(SCREEN)
"""


@dataclass
class Caller:
    phone: str
    national_id: str
    dob: str  # DDMMYYYY


@dataclass
class Result:
    name: str
    latencies: list[float] = field(default_factory=list)
    wall: float = 0.0
    errors: int = 0

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.wall if self.wall else 0.0

    def pct(self, p: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def callers(count: int) -> list[Caller]:
    seen: set[str] = set()
    chosen = []
    for person in ordinary_people(300):
        if person.phone in seen:
            continue
        seen.add(person.phone)
        chosen.append(Caller(person.phone, person.national_id, person.date_of_birth.strftime("%d%m%Y")))
        if len(chosen) == count:
            break
    return chosen


# -- databases ------------------------------------------------------------------------------------
async def _load_demo(url: str) -> None:
    from registry_client.embedded.demo import load_demo
    from registry_client.embedded.registry import EmbeddedRegistry

    engine = make_async_engine(url)
    await load_demo(EmbeddedRegistry(engine), ordinary=300)
    await engine.dispose()


def sqlite_template(folder: Path) -> Path:
    path = folder / "template.db"
    url = f"sqlite:///{path}"
    migrate(url)
    asyncio.run(_load_demo(url))
    return path


def pg_template() -> str:
    import psycopg

    name = f"vaxbench_tpl_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1) + "/" + name
    migrate(url)
    asyncio.run(_load_demo(url))
    return name


def pg_copy(template: str) -> tuple[str, str]:
    import psycopg

    name = f"vaxbench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return name, PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1) + "/" + name


def pg_drop(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- servers ----------------------------------------------------------------------------------------
def start_server(args: list[str], env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", *args, "--host", "127.0.0.1", "--port", str(port),
         "--no-access-log", "--log-level", "warning"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    import urllib.request

    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(
                f"server did not start: {process.stderr.read().decode()[-2000:] if process.stderr else ''}"
            )
        try:
            urllib.request.urlopen(
                urllib.request.Request(f"http://127.0.0.1:{port}/ussd", data=b"x=1", method="POST"), timeout=1
            )
            return process
        except urllib.error.HTTPError:
            return process  # it answers (400 for a bad form)
        except OSError:
            time.sleep(0.2)
    raise SystemExit("server did not start in time")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# -- load -------------------------------------------------------------------------------------------
class Session:
    def __init__(self, http: aiohttp.ClientSession, url: str, phone: str, result: Result) -> None:
        self.http, self.url, self.phone, self.result = http, url, phone, result
        self.id, self.inputs = "", []  # type: tuple[str, list[str]]

    async def post(self) -> str:
        form = {
            "sessionId": self.id,
            "serviceCode": "*384*2021#",
            "phoneNumber": self.phone,
            "networkCode": "45204",
            "text": "*".join(self.inputs),
        }
        started = time.perf_counter()
        async with self.http.post(self.url, data=form) as response:
            body = await response.text()
            ok = response.status == 200
        self.result.latencies.append(time.perf_counter() - started)
        if not ok or not body.startswith(("CON ", "END ")):
            self.result.errors += 1
        return body

    async def dial(self) -> str:
        self.id, self.inputs = f"ATUid_{uuid.uuid4().hex[:20]}", []
        return await self.post()

    async def send(self, text: str) -> str:
        self.inputs.append(text)
        return await self.post()


async def run_caller(
    http: aiohttp.ClientSession, url: str, caller: Caller, sessions: int, result: Result,
    twilio: TwilioStandIn | None,
) -> None:  # fmt: skip
    s = Session(http, url, caller.phone, result)
    await s.dial()
    await s.send("1")
    await s.send(caller.national_id)
    await s.send(caller.dob)
    if twilio is not None:
        message = await twilio.wait_for_async(to=caller.phone, contains="ma xac thuc", timeout=30)
        code = re.search(r"\b(\d{6})\b", message.body)
        screen = await s.send(code[1] if code else "000000")
        if "Da xac thuc" not in screen:
            result.errors += 1
    else:
        await s.send("123456")
    for _ in range(sessions):
        await s.dial()
        screen = await s.send("1")
        if twilio is not None and "Nhap so CCCD" in screen:  # the binding must hold
            result.errors += 1
        await s.send("98")
        await s.send("0")


async def load(
    url: str, people: list[Caller], sessions: int, name: str, twilio: TwilioStandIn | None
) -> Result:
    result = Result(name)
    connector = aiohttp.TCPConnector(limit=len(people))
    async with aiohttp.ClientSession(connector=connector) as http:
        # warm-up: one request per connection
        warm = Result("warm")
        await asyncio.gather(*(Session(http, url, "+84900000000", warm).dial() for _ in people))
        started = time.perf_counter()
        await asyncio.gather(*(run_caller(http, url, c, sessions, result, twilio) for c in people))
        result.wall = time.perf_counter() - started
    return result


# -- the run ----------------------------------------------------------------------------------------
def bench_service(
    db: str,
    workers: int,
    people: list[Caller],
    sessions: int,
    sqlite_tpl: Path,
    pg_tpl: str | None,
    tmp: Path,
) -> Result:
    port = free_port()
    pg_name = None
    if db == "sqlite":
        path = tmp / f"run-{workers}-{uuid.uuid4().hex[:6]}.db"
        shutil.copy(sqlite_tpl, path)
        url = f"sqlite:///{path}"
    else:
        assert pg_tpl is not None
        pg_name, url = pg_copy(pg_tpl)
    with TwilioStandIn() as twilio:
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "DATA_DIR": str(tmp / "data"),
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
            "SECRET_KEY": "bench-secret",
            "TWILIO_ACCOUNT_SID": twilio.account_sid,
            "TWILIO_AUTH_TOKEN": twilio.auth_token,
            "TWILIO_FROM": twilio.from_number,
            "TWILIO_API_BASE": twilio.base_url,
            "OUTBOX_POLL_SECONDS": "0.1",
        }
        env.pop("TELEGRAM_BOT_TOKEN", None)
        server = start_server(["app:app_from_environment", "--factory", "--workers", str(workers)], env, port)
        try:
            result = asyncio.run(
                load(f"http://127.0.0.1:{port}/ussd", people, sessions, f"service {db} x{workers}", twilio)
            )
        finally:
            stop_server(server)
            if pg_name:
                pg_drop(pg_name)
    return result


def bench_bare(workers: int, people: list[Caller], sessions: int, tmp: Path) -> Result:
    (tmp / "bare_ussd.py").write_text(BARE_APP)
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(tmp)}
    server = start_server(["bare_ussd:app", "--workers", str(workers), "--app-dir", str(tmp)], env, port)
    try:
        return asyncio.run(load(f"http://127.0.0.1:{port}/ussd", people, sessions, f"bare x{workers}", None))
    finally:
        stop_server(server)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--callers", type=int, default=20)
    parser.add_argument("--sessions", type=int, default=6, help="USSD sessions per caller after the login")
    parser.add_argument("--only", default="sqlite-1,sqlite-2,postgres-1,postgres-2")
    args = parser.parse_args()
    people = callers(args.callers)
    wanted = [tuple(x.split("-")) for x in args.only.split(",")]
    requests_each = 5 + 4 * args.sessions
    print(
        f"{len(people)} concurrent USSD callers, each: login (5 requests) + {args.sessions} sessions "
        f"(4 requests) = {requests_each} requests; machine: {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        sqlite_tpl = sqlite_template(tmp)
        pg_tpl = pg_template() if any(db == "postgres" for db, _ in wanted) else None
        try:
            bare: dict[int, Result] = {}
            rows: list[tuple[Result, Result]] = []
            for db, workers_text in wanted:
                workers = int(workers_text)
                if workers not in bare:
                    bare[workers] = bench_bare(workers, people, args.sessions, tmp)
                    report(bare[workers], None)
                result = bench_service(db, workers, people, args.sessions, sqlite_tpl, pg_tpl, tmp)
                report(result, bare[workers])
                rows.append((result, bare[workers]))
        finally:
            if pg_tpl:
                pg_drop(pg_tpl)
    print("\nsummary (goal: >= 40 % of bare throughput, p99 < 100 ms)")
    for result, base in rows:
        ratio = result.rps / base.rps if base.rps else 0.0
        verdict = "OK" if ratio >= 0.4 and result.pct(99) < 100 else "below goal"
        print(f"  {result.name:<22} {ratio:6.1%} of bare, p99 {result.pct(99):6.1f} ms  {verdict}")


def report(result: Result, base: Result | None) -> None:
    ratio = f"  {result.rps / base.rps:6.1%} of bare x{result.name[-1]}" if base and base.rps else ""
    print(
        f"{result.name:<22} {len(result.latencies):6d} req  {result.rps:8.1f} req/s  "
        f"p50 {result.pct(50):6.1f} ms  p99 {result.pct(99):6.1f} ms  mean {statistics.fmean(result.latencies) * 1000:6.1f} ms  "
        f"errors {result.errors}{ratio}",
        flush=True,
    )


if __name__ == "__main__":
    main()
