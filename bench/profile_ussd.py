"""Where a USSD request's CPU goes, in-process: the service's ASGI app (as `create_app` builds it,
access log on) called directly with menu-only USSD posts, under cProfile.

    python bench/profile_ussd.py [--requests 3000] [--redis] [--top 35]

No HTTP server here (bench/budget.py measures that part): this shows the functions inside the
ASGI app, sorted by their own time, for a fresh SQLite database (or PostgreSQL + Redis with
`--redis`: BENCH_PG_ADMIN, BENCH_REDIS_URL as in bench/service.py).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.service import GATEWAY_TOKEN, REDIS_URL, pg_drop, pg_template, redis_flush  # noqa: E402

PHONES = [f"+8490{n:07d}" for n in range(1_000_100, 1_000_150)]


async def drive(app: object, requests: int, status: bool = False) -> float:
    """Posts `requests` menu-only USSD requests (a dial, then `1`), or with `status` a bound
    caller's status journey (dial, `1` the doses, `98` next page, `0` back); returns CPU s per
    request."""
    sent: list[dict[str, object]] = []

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    async def one(n: int, text: str, session_id: str) -> None:
        body = urlencode({"sessionId": session_id, "serviceCode": "*384*2021#",
                          "phoneNumber": PHONES[n % len(PHONES)], "networkCode": "45204", "text": text}).encode()  # fmt: skip
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
            "scheme": "http", "path": "/ussd", "raw_path": b"/ussd", "query_string": b"", "root_path": "",
            "headers": [(b"host", b"bench"), (b"content-type", b"application/x-www-form-urlencoded"),
                        (b"content-length", str(len(body)).encode()), (b"x-gateway-token", GATEWAY_TOKEN.encode())],
            "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000),
        }  # fmt: skip
        messages = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> dict[str, object]:
            return messages.pop() if messages else {"type": "http.disconnect"}

        sent.clear()
        await app(scope, receive, send)  # type: ignore[operator]
        assert sent[0]["status"] == 200, sent

    for n in range(100):  # warm-up
        await one(n, "", f"warm{n}")
    steps = ("", "1", "1*98", "1*98*0") if status else ("", "1")
    started = time.process_time()
    for n in range(requests // len(steps)):
        session_id = f"ATUid_{uuid.uuid4().hex[:20]}"
        for text in steps:
            await one(n, text, session_id)
    return (time.process_time() - started) / (requests // len(steps) * len(steps))


async def bind_phones(app: Any) -> None:
    from registry_client.embedded.demo import ordinary_people

    registry, bindings = app.state.registry, app.state.conversations.bindings
    for phone, person in zip(PHONES, ordinary_people(50), strict=True):
        found = await registry.find_person(person.national_id, person.date_of_birth)
        await bindings.bind("ussd", phone, found.id, via_phone=phone)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--redis", action="store_true")
    parser.add_argument("--top", type=int, default=35)
    parser.add_argument("--status", action="store_true", help="bound callers reading their doses")
    args = parser.parse_args()
    from bench.service import sqlite_template

    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        pg_name = prefix = None
        if args.redis:
            pg_name = pg_template(ordinary=50)
            from bench.service import _pg_url

            url = _pg_url(pg_name)
            prefix = f"vaxprof{uuid.uuid4().hex[:8]}"
            os.environ.update(REDIS_URL=REDIS_URL, REDIS_KEY_PREFIX=prefix)
        else:
            url = f"sqlite:///{sqlite_template(tmp, ordinary=50)}"
            os.environ.pop("REDIS_URL", None)
        os.environ.update(DATABASE_URL=url, DATA_DIR=str(tmp / "data"), SECRET_KEY="bench-secret",
                          USSD_GATEWAY_TOKEN=GATEWAY_TOKEN, OUTBOX_POLL_SECONDS="30")  # fmt: skip
        for name in ("TELEGRAM_BOT_TOKEN", "TWILIO_AUTH_TOKEN", "TWILIO_ACCOUNT_SID"):
            os.environ.pop(name, None)
        from app import app_from_environment, one_process_app_from_environment

        app = app_from_environment() if args.redis else one_process_app_from_environment()
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - the access log, written but not shown

        async def run() -> None:
            async with app.router.lifespan_context(app):
                if args.status:  # each phone bound to a demo citizen, as after a login
                    await bind_phones(app)
                plain = await drive(app, args.requests, args.status)
                profiler = cProfile.Profile()
                profiler.enable()
                await drive(app, args.requests, args.status)
                profiler.disable()
                print(
                    f"CPU per request without the profiler: {plain * 1e6:.1f} µs (in-process, no HTTP server)"
                )
                stats = pstats.Stats(profiler, stream=sys.stdout)
                stats.sort_stats(os.environ.get("BENCH_SORT", "tottime")).print_stats(args.top)
                if os.environ.get("BENCH_CALLEES"):
                    stats.print_callees(os.environ["BENCH_CALLEES"])

        try:
            asyncio.run(run())
        except BaseException:
            sys.stderr = sys.__stderr__
            raise
        finally:
            if pg_name:
                pg_drop(pg_name)
            if prefix:
                redis_flush(REDIS_URL, prefix)


if __name__ == "__main__":
    main()
