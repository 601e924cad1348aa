"""USSD channel benchmark (issue 4): concurrent simulated callers against the real service.

    python bench/channels.py [--callers 20] [--sessions 6] [--only sqlite-1,...]

Configurations: `sqlite-N`, `postgres-N` (N uvicorn workers), and `pgredis-N`: PostgreSQL with
REDIS_URL set (USSD session state, binding caches and rate counters in Redis).

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
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.service import (  # noqa: E402
    GATEWAY_TOKEN,
    REDIS_URL,
    Result,
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
from bench.service import UssdSession as Session  # noqa: E402
from tests.fakes.twilio_api import TwilioStandIn  # noqa: E402


@dataclass
class Caller:
    phone: str
    national_id: str
    dob: str  # DDMMYYYY


def callers(count: int) -> list[Caller]:
    return [
        Caller(p.phone, p.national_id, p.date_of_birth.strftime("%d%m%Y"))
        for p in distinct_phone_people(count)
    ]


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
    prefix = f"vaxbench{uuid.uuid4().hex[:8]}"
    with TwilioStandIn() as twilio:
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "DATA_DIR": str(tmp / "data"),
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
            "SECRET_KEY": "bench-secret",
            "USSD_GATEWAY_TOKEN": GATEWAY_TOKEN,
            "TWILIO_ACCOUNT_SID": twilio.account_sid,
            "TWILIO_AUTH_TOKEN": twilio.auth_token,
            "TWILIO_FROM": twilio.from_number,
            "TWILIO_API_BASE": twilio.base_url,
            "OUTBOX_POLL_SECONDS": "0.1",
        }
        env.pop("TELEGRAM_BOT_TOKEN", None)
        env.pop("REDIS_URL", None)
        if db == "pgredis":
            env.update(REDIS_URL=REDIS_URL, REDIS_KEY_PREFIX=prefix)
        server = start_server(service_command(workers), env, port)
        try:
            result = asyncio.run(
                load(f"http://127.0.0.1:{port}/ussd", people, sessions, f"service {db} x{workers}", twilio)
            )
        finally:
            stop_server(server)
            if pg_name:
                pg_drop(pg_name)
            if db == "pgredis":
                redis_flush(REDIS_URL, prefix)
    return result


def bench_bare(workers: int, people: list[Caller], sessions: int, tmp: Path) -> Result:
    server, port = start_bare(workers, tmp)
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
        pg_tpl = pg_template() if any(db in ("postgres", "pgredis") for db, _ in wanted) else None
        try:
            rows: list[tuple[Result, Result]] = []
            for db, workers_text in wanted:
                workers = int(workers_text)
                # the ceiling right before each configuration: the machine is shared and its load moves
                bare = bench_bare(workers, people, args.sessions, tmp)
                report(bare, None)
                result = bench_service(db, workers, people, args.sessions, sqlite_tpl, pg_tpl, tmp)
                report(result, bare)
                rows.append((result, bare))
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
