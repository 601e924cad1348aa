"""CPU budget of one USSD request, by stage, next to the bare endpoint (issue 15).

    python bench/budget.py [--requests 3000] [--seconds 8] [--only sqlite-1,pgredis-1,pgredis-2]

The service runs as the deployment runs it (uvicorn, uvloop + httptools, its own access log ON),
wrapped by `staged_app` below: the stages of the USSD handler are timed with the process's CPU
clock (`time.process_time_ns`, every thread of the worker) and each worker writes its totals when
it stops. One caller on one keep-alive connection posts menu-only requests (a fresh session's
dial, then `1`, for 50 unbound phones in turn), one at a time, so every CPU nanosecond of the
worker belongs to the request being served. Then, in the same run, the bare FastAPI app (a
constant `CON` screen) gets the same requests.

Printed per configuration, CPU µs per request:
  total         the worker's CPU from the first to the last request, divided by requests
  http server   uvicorn: socket, HTTP parsing, response writing (total - ASGI)
  asgi stack    FastAPI/Starlette routing and middleware (ASGI - the stages below)
  form parse    gateway token check, body read, form decoding
  session read  Redis MGET / SQL read of the session and bindings, decoded
  engine        the conversation engine (menus, flows)
  render        the USSD screen
  session write serialisation + Redis SET / SQL statement
  metrics, log  Prometheus counters and the access-log line
Then a closed-loop throughput run (`--callers` keep-alive connections, the same menu requests,
`--seconds`) for each configuration — the service started as the README starts it,
`python main.py serve --no-demo --workers N` — and, right before it, for the bare app with the
same worker count: requests/s, ratio to bare, p50/p99.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.service import (  # noqa: E402
    GATEWAY_HEADERS,
    GATEWAY_TOKEN,
    REDIS_URL,
    ROOT,
    Result,
    free_port,
    pg_copy,
    pg_drop,
    pg_template,
    redis_flush,
    sqlite_template,
    start_process,
    start_server,
    stop_server,
)

STAGES = ("form parse", "session read", "engine", "render", "session write", "metrics, log")
PHONES = [f"+8490{n:07d}" for n in range(1_000_100, 1_000_150)]  # unbound phones: menus only


# -- the worker side: the app with stage timers ------------------------------------------------------
class _Clock:
    """Per-stage CPU nanoseconds; a stage entered inside another one counts for the outer one."""

    def __init__(self) -> None:
        self.ns: dict[str, int] = defaultdict(int)
        self.active = False
        self.requests = 0
        self.first: int | None = None
        self.last = 0

    def wrap(self, stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        clock = self
        if asyncio.iscoroutinefunction(fn):

            async def timed_async(*args: Any, **kwargs: Any) -> Any:
                if clock.active:
                    return await fn(*args, **kwargs)
                clock.active, started = True, time.process_time_ns()
                try:
                    return await fn(*args, **kwargs)
                finally:
                    clock.ns[stage] += time.process_time_ns() - started
                    clock.active = False

            return timed_async

        def timed(*args: Any, **kwargs: Any) -> Any:
            if clock.active:
                return fn(*args, **kwargs)
            clock.active, started = True, time.process_time_ns()
            try:
                return fn(*args, **kwargs)
            finally:
                clock.ns[stage] += time.process_time_ns() - started
                clock.active = False

        return timed


def _patch(clock: _Clock, owner: Any, name: str, stage: str) -> None:
    if hasattr(owner, name):
        setattr(owner, name, clock.wrap(stage, getattr(owner, name)))


def staged_app() -> Any:
    """`uvicorn --factory bench.budget:staged_app`: the service with its USSD stages timed."""
    import app as service_app
    import web.observability as observability
    from conversations import hot_state, service, session_store
    from sms_gateway import ussd

    clock = _Clock()
    for owner, name, stage in (
        (ussd, "require_gateway_token", "form parse"),
        (ussd, "read_body", "form parse"),
        (ussd, "parse_form", "form parse"),
        (ussd, "parse_ussd_form", "form parse"),
        (hot_state.RedisHotState, "load", "session read"),
        (session_store.SqlSessionStore, "load", "session read"),
        (service.ConversationService, "_run", "engine"),
        (ussd, "render_ussd", "render"),
        (service.ConversationService, "_values", "session write"),
        (hot_state.RedisHotState, "save_light", "session write"),
        (hot_state.RedisHotState, "after_durable", "session write"),
        (session_store.SqlSessionStore, "save_light", "session write"),
        (service.ConversationService, "_persist", "session write"),
        (observability, "record_request", "metrics, log"),
    ):
        _patch(clock, owner, name, stage)
    inner = service_app.one_process_app_from_environment()  # one worker, as `python main.py`
    out = Path(os.environ["BENCH_STAGES_DIR"]) / f"{os.getpid()}.json"

    async def timed_app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":

            async def on_stop(message: Any) -> None:
                if message["type"] == "lifespan.shutdown.complete":
                    cpu = clock.last - (clock.first or clock.last)
                    out.write_text(
                        json.dumps({"requests": clock.requests, "cpu_ns": cpu, "stages": clock.ns})
                    )
                await send(message)

            await inner(scope, receive, on_stop)
            return
        # the worker's CPU from the first request's arrival to the last one's answer
        now = time.process_time_ns()
        if clock.first is None:
            clock.first = now
        clock.active = False
        await inner(scope, receive, send)
        clock.ns["asgi"] += time.process_time_ns() - now
        clock.requests += 1
        clock.last = time.process_time_ns()

    return timed_app


BARE_STAGED = """
import json, os, time
from pathlib import Path
from bare_ussd import app as inner
state = {"requests": 0, "first": None, "last": 0, "asgi": 0}
out = Path(os.environ["BENCH_STAGES_DIR"]) / f"{os.getpid()}.json"

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        async def on_stop(message):
            if message["type"] == "lifespan.shutdown.complete":
                cpu = state["last"] - (state["first"] or state["last"])
                out.write_text(json.dumps({"requests": state["requests"], "cpu_ns": cpu, "stages": {"asgi": state["asgi"]}}))
            await send(message)
        await inner(scope, receive, on_stop)
        return
    now = time.process_time_ns()
    if state["first"] is None:
        state["first"] = now
    await inner(scope, receive, send)
    state["asgi"] += time.process_time_ns() - now
    state["requests"] += 1
    state["last"] = time.process_time_ns()
"""


# -- the driver side -------------------------------------------------------------------------------
async def _post(http: aiohttp.ClientSession, url: str, session_id: str, phone: str, text: str) -> float:
    form = {"sessionId": session_id, "serviceCode": "*384*2021#", "phoneNumber": phone,
            "networkCode": "45204", "text": text}  # fmt: skip
    started = time.perf_counter()
    async with http.post(url, data=form, headers=GATEWAY_HEADERS) as response:
        body = await response.text()
        if response.status != 200 or not body.startswith(("CON ", "END ")):
            raise SystemExit(f"unexpected answer {response.status}: {body[:200]!r}")
    return time.perf_counter() - started


async def _caller(http: aiohttp.ClientSession, url: str, result: Result, deadline: float, start: int) -> None:
    n = start
    while time.perf_counter() < deadline:
        phone, session_id = PHONES[n % len(PHONES)], f"ATUid_{uuid.uuid4().hex[:20]}"
        for text in ("", "1"):
            try:
                result.latencies.append(await _post(http, url, session_id, phone, text))
            except (aiohttp.ClientError, SystemExit):
                result.errors += 1
        n += 7


async def sequential(url: str, requests: int) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as http:
        for n in range(requests // 2):
            phone, session_id = PHONES[n % len(PHONES)], f"ATUid_{uuid.uuid4().hex[:20]}"
            await _post(http, url, session_id, phone, "")
            await _post(http, url, session_id, phone, "1")


async def closed_loop(url: str, callers: int, seconds: float, name: str) -> Result:
    result = Result(name)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=callers)) as http:
        await asyncio.gather(
            *(_caller(http, url, Result("warm"), time.perf_counter() + 1.0, i) for i in range(callers))
        )
        started = time.perf_counter()
        await asyncio.gather(*(_caller(http, url, result, started + seconds, i) for i in range(callers)))
        result.wall = time.perf_counter() - started
    return result


def _collect(folder: Path) -> dict[str, Any]:
    total: dict[str, Any] = {"requests": 0, "cpu_ns": 0, "stages": defaultdict(int)}
    for path in folder.glob("*.json"):
        data = json.loads(path.read_text())
        total["requests"] += data["requests"]
        total["cpu_ns"] += data["cpu_ns"]
        for k, v in data["stages"].items():
            total["stages"][k] += v
        path.unlink()
    return total


class Target:
    """A server to measure: the service on a database, or the bare app."""

    def __init__(
        self, kind: str, workers: int, tmp: Path, sqlite_tpl: Path | None, pg_tpl: str | None
    ) -> None:
        self.kind, self.workers, self.tmp = kind, workers, tmp
        self.sqlite_tpl, self.pg_tpl = sqlite_tpl, pg_tpl
        self.stages_dir = tmp / f"stages-{uuid.uuid4().hex[:6]}"
        self.stages_dir.mkdir()
        self.pg_name: str | None = None
        self.prefix = f"vaxbudget{uuid.uuid4().hex[:8]}"
        self.as_deployed = False  # True: `python main.py serve --no-demo --workers N`

    @contextlib.contextmanager
    def running(self) -> Any:
        port = free_port()
        env = {**os.environ, "BENCH_STAGES_DIR": str(self.stages_dir)}
        if self.kind == "bare":
            from bench.service import BARE_APP

            (self.tmp / "bare_ussd.py").write_text(BARE_APP)
            (self.tmp / "bare_staged.py").write_text(BARE_STAGED)
            env["PYTHONPATH"] = str(self.tmp)
            args = ["bare_staged:app", "--app-dir", str(self.tmp)]
        else:
            if self.kind == "sqlite":
                assert self.sqlite_tpl is not None
                path = self.tmp / f"run-{uuid.uuid4().hex[:6]}.db"
                shutil.copy(self.sqlite_tpl, path)
                url = f"sqlite:///{path}"
            else:
                assert self.pg_tpl is not None
                self.pg_name, url = pg_copy(self.pg_tpl)
            env.update(
                DATABASE_URL=url, DATA_DIR=str(self.tmp / "data"), SECRET_KEY="bench-secret",
                USSD_GATEWAY_TOKEN=GATEWAY_TOKEN, OUTBOX_POLL_SECONDS="5", PYTHONPATH=str(ROOT),
            )  # fmt: skip
            for name in ("TELEGRAM_BOT_TOKEN", "REDIS_URL", "TWILIO_AUTH_TOKEN", "TWILIO_ACCOUNT_SID"):
                env.pop(name, None)
            if self.kind == "pgredis":
                env.update(REDIS_URL=REDIS_URL, REDIS_KEY_PREFIX=self.prefix)
            args = ["bench.budget:staged_app", "--factory"]
        args += ["--workers", str(self.workers)] if self.workers > 1 else []
        if self.as_deployed and self.kind != "bare":  # as the README starts it
            env.update(HOST="127.0.0.1", PORT=str(port))
            server = start_main(["--workers", str(self.workers)], env, port)
        else:
            server = start_server(args, env, port)
        try:
            yield f"http://127.0.0.1:{port}/ussd"
        finally:
            stop_server(server)
            if self.pg_name:
                pg_drop(self.pg_name)
                self.pg_name = None
            if self.kind == "pgredis":
                redis_flush(REDIS_URL, self.prefix)

    def budget(self, requests: int) -> dict[str, Any]:
        _collect(self.stages_dir)
        with self.running() as url:
            asyncio.run(sequential(url, 200))  # warm-up (not counted: a fresh server below)
        _collect(self.stages_dir)
        with self.running() as url:
            asyncio.run(sequential(url, requests))
        return _collect(self.stages_dir)

    def throughput(self, callers: int, seconds: float, name: str) -> Result:
        self.as_deployed = True
        with self.running() as url:
            result = asyncio.run(closed_loop(url, callers, seconds, name))
        _collect(self.stages_dir)
        return result


def start_main(args: list[str], env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    """`python main.py serve --no-demo ARGS` (HOST/PORT in env); returns once /ussd answers."""
    return start_process([sys.executable, "main.py", "serve", "--no-demo", *args], env, port)


def budget_lines(name: str, data: dict[str, Any]) -> list[str]:
    n = max(1, data["requests"])
    stages = data["stages"]
    us = {k: v / n / 1000 for k, v in stages.items()}
    total = data["cpu_ns"] / n / 1000
    asgi = us.get("asgi", 0.0)
    inner = sum(us.get(s, 0.0) for s in STAGES)
    parts = [("http server", total - asgi), ("asgi stack", asgi - inner)] + [
        (s, us.get(s, 0.0)) for s in STAGES
    ]
    cells = "  ".join(f"{k} {v:7.1f}" for k, v in parts)
    return [f"{name:<16} {data['requests']:5d} req  total {total:7.1f} µs  |  {cells}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="sequential requests for the CPU budget")
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each throughput run")
    parser.add_argument("--callers", type=int, default=16)
    parser.add_argument("--only", default="sqlite-1,pgredis-1,pgredis-2")
    parser.add_argument("--no-throughput", action="store_true")
    args = parser.parse_args()
    wanted = [(db, int(w)) for db, w in (x.split("-") for x in args.only.split(","))]
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        sqlite_tpl = sqlite_template(tmp) if any(db == "sqlite" for db, _ in wanted) else None
        pg_tpl = pg_template() if any(db != "sqlite" for db, _ in wanted) else None
        try:
            print("\nCPU µs per USSD request (menu-only, one request at a time, 1 worker)")
            bare = Target("bare", 1, tmp, None, None)
            for line in budget_lines("bare x1", bare.budget(args.requests)):
                print(line, flush=True)
            for db in dict.fromkeys(db for db, _ in wanted):
                data = Target(db, 1, tmp, sqlite_tpl, pg_tpl).budget(args.requests)
                for line in budget_lines(f"{db} x1", data):
                    print(line, flush=True)
            if args.no_throughput:
                return
            print(f"\nthroughput: {args.callers} keep-alive callers, closed loop, {args.seconds:g} s each")
            rows = []
            for db, workers in wanted:
                base = Target("bare", workers, tmp, None, None).throughput(
                    args.callers, args.seconds, f"bare x{workers}"
                )
                result = Target(db, workers, tmp, sqlite_tpl, pg_tpl).throughput(
                    args.callers, args.seconds, f"{db} x{workers}"
                )
                for r in (base, result):
                    ratio = f"{r.rps / base.rps:6.1%} of bare" if r is result and base.rps else ""
                    print(f"  {r.name:<14} {r.rps:8.1f} req/s  p50 {r.pct(50):6.1f} ms  p99 {r.pct(99):6.1f} ms  "
                          f"errors {r.errors}  {ratio}", flush=True)  # fmt: skip
                rows.append((result, base))
        finally:
            if pg_tpl:
                pg_drop(pg_tpl)


if __name__ == "__main__":
    main()
