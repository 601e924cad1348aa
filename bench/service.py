"""Shared by the service benchmarks (`channels.py`, `load.py`): fresh databases with the demo
identities, the service and the bare-FastAPI ceiling under uvicorn, latency figures, and a USSD
session speaking Africa's Talking's form posts.

Both servers run with the same uvicorn setup: `--loop uvloop --http httptools`, access log off,
log level warning, N worker processes on one port.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from db.base import make_async_engine  # noqa: E402
from db.migrate import migrate  # noqa: E402
from registry_client.embedded.demo import DemoPerson, ordinary_people  # noqa: E402

PG_ADMIN = os.environ.get("BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
# The USSD gateway's credential, given to the service as USSD_GATEWAY_TOKEN and sent on every post.
GATEWAY_TOKEN = "bench-gateway-token"
GATEWAY_HEADERS = {"X-Gateway-Token": GATEWAY_TOKEN}
UVICORN_FLAGS = ["--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning"]
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


# -- figures --------------------------------------------------------------------------------------
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
        """The p-th percentile latency in milliseconds."""
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000


# -- identities -----------------------------------------------------------------------------------
def distinct_phone_people(count: int, pool: int = 800) -> list[DemoPerson]:
    """Demo citizens, one per registered phone (so logins never share a phone's code limits)."""
    seen: set[str] = set()
    chosen = []
    for person in ordinary_people(pool):
        if person.phone in seen:
            continue
        seen.add(person.phone)
        chosen.append(person)
        if len(chosen) == count:
            return chosen
    raise SystemExit(f"only {len(chosen)} demo citizens with distinct phones in a pool of {pool}")


# -- databases ------------------------------------------------------------------------------------
async def _load_demo(url: str, ordinary: int) -> None:
    from registry_client.embedded.demo import load_demo
    from registry_client.embedded.registry import EmbeddedRegistry

    engine = make_async_engine(url)
    await load_demo(EmbeddedRegistry(engine), ordinary=ordinary)
    await engine.dispose()


def sqlite_template(folder: Path, ordinary: int = 300) -> Path:
    path = folder / "template.db"
    url = f"sqlite:///{path}"
    migrate(url)
    asyncio.run(_load_demo(url, ordinary))
    return path


def _pg_url(name: str) -> str:
    return PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1) + "/" + name


def pg_template(ordinary: int = 300) -> str:
    import psycopg

    name = f"vaxbench_tpl_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    migrate(_pg_url(name))
    asyncio.run(_load_demo(_pg_url(name), ordinary))
    return name


def pg_copy(template: str) -> tuple[str, str]:
    """A fresh database cloned from the template: (name, SQLAlchemy URL)."""
    import psycopg

    name = f"vaxbench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return name, _pg_url(name)


def pg_drop(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def redis_flush(url: str, prefix: str) -> None:
    """Deletes this run's keys (`prefix:*`) from Redis."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(f"{prefix}:*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])
    finally:
        client.close()


# -- servers --------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    args: list[str], env: dict[str, str], port: int, probe: str = "/ussd"
) -> subprocess.Popen[bytes]:
    """`python -m uvicorn ARGS` on 127.0.0.1:port; returns once it answers `probe`."""
    command = [sys.executable, "-m", "uvicorn", *args, "--host", "127.0.0.1", "--port", str(port), *UVICORN_FLAGS]
    return start_process(command, env, port, probe)


def start_process(
    command: list[str], env: dict[str, str], port: int, probe: str = "/ussd"
) -> subprocess.Popen[bytes]:
    """Runs `command` in the checkout; returns once 127.0.0.1:port answers a POST to `probe` (any
    HTTP status: 400 for a bad form, 403 without the gateway token). The log goes to a temporary
    file: a pipe nobody reads fills up and then blocks the server."""
    log = tempfile.NamedTemporaryFile(prefix="vaxbench-server-", suffix=".log", delete=False)  # noqa: SIM115
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log)
    log.close()
    process.log_path = log.name  # type: ignore[attr-defined]
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server did not start: {Path(log.name).read_text()[-2000:]}")
        try:
            request = urllib.request.Request(f"http://127.0.0.1:{port}{probe}", data=b"x=1", method="POST")
            urllib.request.urlopen(request, timeout=1)
            return process
        except urllib.error.HTTPError:
            return process  # it answers
        except OSError:
            time.sleep(0.2)
    stop_server(process)
    raise SystemExit("server did not start in time")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    log = getattr(process, "log_path", None)
    if log:
        Path(log).unlink(missing_ok=True)


def start_bare(workers: int, folder: Path) -> tuple[subprocess.Popen[bytes], int]:
    """The ceiling: a FastAPI app answering every POST /ussd with a constant `CON` screen."""
    (folder / "bare_ussd.py").write_text(BARE_APP)
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(folder)}
    server = start_server(["bare_ussd:app", "--workers", str(workers), "--app-dir", str(folder)], env, port)
    return server, port


def service_command(workers: int) -> list[str]:
    """One worker: the single-process factory (session state in memory, as `python main.py`)."""
    factory = "app:one_process_app_from_environment" if workers == 1 else "app:app_from_environment"
    return [factory, "--factory", "--workers", str(workers)]


# -- a USSD session --------------------------------------------------------------------------------
class UssdSession:
    """One caller's USSD session: every post carries all inputs so far joined by `*`."""

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
        try:
            async with self.http.post(self.url, data=form, headers=GATEWAY_HEADERS) as response:
                body = await response.text()
                ok = response.status == 200
        except aiohttp.ClientError:
            body, ok = "", False
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
