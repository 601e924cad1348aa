"""Certificate-code check benchmark (issue 9): POST /api/verify-code through HTTP.

    python bench/verify_code.py [--codes 100000] [--requests 2000] [--concurrency 1,4]
                                               [--db sqlite|postgres|both]

A fresh database gets `--codes` issued certificates and their codes (bulk-inserted rows, as
`CertificateCodes.code_for` writes them). The real service runs under uvicorn
(`app:app_from_environment`, one worker, access log off). A client with each `--concurrency`
number of connections (1: the latency of one check alone; more: checks queue behind each other
on the one worker) then sends, in alternating rounds, GET /healthz (the baseline: one `SELECT 1`
through the same stack) and POST /api/verify-code with a random stored code and its birth year
(each check: the caller's and the code's failure counters by primary key, the code joined to its
certificate by unique index, and the audit row written). Every answer must be `valid: true`.

Printed per database and concurrency: p50, p99 and mean latency (ms) of both endpoints and the ratios of the
check to the baseline. Goal: p99 < 20 ms for the check.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert  # noqa: E402

from certificates.code_secrets import CodeSecrets  # noqa: E402
from certificates.code_tables import CertificateCodeRow  # noqa: E402
from certificates.codes import format_code, generate_code  # noqa: E402
from certificates.tables import IssuedCertificateRow  # noqa: E402
from db.base import make_sync_engine  # noqa: E402
from db.migrate import migrate  # noqa: E402
from db.secret_keys import SecretKeys  # noqa: E402

PG_ADMIN = os.environ.get("BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/test")
ROUNDS = 4
SECRET_KEY = "bench-secret"  # the service's, so that it finds the codes filled in here


@dataclass
class Timings:
    name: str
    latencies: list[float] = field(default_factory=list)
    errors: int = 0

    def pct(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000

    @property
    def mean(self) -> float:
        return sum(self.latencies) / len(self.latencies) * 1000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fill(url: str, count: int) -> list[tuple[str, int]]:
    """`count` certificates with codes; returns (shown code, birth year) of every one."""
    migrate(url)
    secrets = CodeSecrets.from_keys(SecretKeys.derive(SECRET_KEY))
    engine = make_sync_engine(url)
    now = datetime.now(UTC).replace(microsecond=0)
    rng = random.Random(9)
    samples: list[tuple[str, int]] = []
    batch = 5000
    with engine.begin() as conn:
        for start in range(0, count, batch):
            certs, codes = [], []
            for i in range(start, min(count, start + batch)):
                uvci = f"URN:UVCI:01:VN:BENCH{i:09d}#X"
                code, year = generate_code(), rng.randint(1930, 2015)
                certs.append(
                    {
                        "person_id": str(100000 + i),
                        "uvci": uvci,
                        "fingerprint": f"{i:064d}",
                        "kid": "00" * 8,
                        "issued_at": now,
                        "expires_at": now + timedelta(days=365),
                        "dose_count": 2,
                        "latest_dose_on": date(2021, 10, 1),
                        "hc1": "HC1:BENCH",
                    }
                )
                codes.append(
                    {
                        "code_digest": secrets.digest(code),
                        "code_sealed": secrets.seal(code, uvci),
                        "uvci": uvci,
                        "person_id": str(100000 + i),
                        "holder_name": "Nguyễn T. Ánh",
                        "birth_year": year,
                        "dose_count": 2,
                        "latest_dose_on": date(2021, 10, 1),
                        "created_at": now,
                    }
                )
                samples.append((format_code(code), year))
            conn.execute(insert(IssuedCertificateRow), certs)
            conn.execute(insert(CertificateCodeRow), codes)
    engine.dispose()
    return samples


def start_server(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "app:app_from_environment", "--factory", "--host", "127.0.0.1",
             "--port", str(port), "--no-access-log", "--log-level", "warning"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err,
        )  # fmt: skip
    import urllib.request

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server did not start: {log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return process
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


async def one(
    http: aiohttp.ClientSession, base: str, timings: Timings, sample: tuple[str, int] | None
) -> None:
    started = time.perf_counter()
    if sample is None:
        async with http.get(f"{base}/healthz") as response:
            ok = response.status == 200 and (await response.json())["status"] == "ok"
    else:
        async with http.post(
            f"{base}/api/verify-code", json={"code": sample[0], "birth_year": sample[1]}
        ) as response:
            ok = response.status == 200 and (await response.json())["valid"] is True
    timings.latencies.append(time.perf_counter() - started)
    if not ok:
        timings.errors += 1


async def drive(
    base: str, samples: list[tuple[str, int]], requests: int, concurrency: int
) -> tuple[Timings, Timings]:
    health, check = Timings("GET /healthz"), Timings("POST /api/verify-code")
    rng = random.Random(1)
    per_round = max(1, requests // ROUNDS)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:
        warm = Timings("warm")
        for _ in range(3 * concurrency):  # connections, caches, first compilations
            await one(http, base, warm, rng.choice(samples))
            await one(http, base, warm, None)

        async def worker(queue: list[tuple[str, int] | None], timings: Timings) -> None:
            while queue:
                await one(http, base, timings, queue.pop())

        for _ in range(ROUNDS):
            for timings, make in ((health, lambda: None), (check, lambda: rng.choice(samples))):
                queue = [make() for _ in range(per_round)]
                await asyncio.gather(*(worker(queue, timings) for _ in range(concurrency)))
    return health, check


def bench(db: str, codes: int, requests: int, concurrencies: list[int], tmp: Path) -> None:
    pg_name = None
    if db == "sqlite":
        url = f"sqlite:///{tmp / f'bench-{uuid.uuid4().hex[:6]}.db'}"
    else:
        import psycopg

        pg_name = f"vaxbench_codes_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{pg_name}"')
        url = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1) + "/" + pg_name
    try:
        started = time.perf_counter()
        samples = fill(url, codes)
        print(
            f"[{db}] {codes} certificates with codes loaded in {time.perf_counter() - started:.1f} s",
            flush=True,
        )
        port = free_port()
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "DATA_DIR": str(tmp / "data"),
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
            "SECRET_KEY": SECRET_KEY,
            "RUN_WORKERS": "false",
        }
        env.pop("TELEGRAM_BOT_TOKEN", None)
        server = start_server(env, port, tmp / f"server-{db}.log")
        try:
            for concurrency in concurrencies:
                health, check = asyncio.run(drive(f"http://127.0.0.1:{port}", samples, requests, concurrency))
                report(f"{db} c={concurrency}", health, check)
        finally:
            stop_server(server)
    finally:
        if pg_name:
            import psycopg

            with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')


def report(label: str, health: Timings, check: Timings) -> None:
    for t in (health, check):
        print(
            f"[{label}] {t.name:<22} n={len(t.latencies):5d}  p50 {t.pct(50):6.2f} ms  p99 {t.pct(99):6.2f} ms  "
            f"mean {t.mean:6.2f} ms  errors {t.errors}"
        )
    goal = "MET" if check.pct(99) < 20 and not check.errors else "NOT MET"
    print(
        f"[{label}] check / baseline: p50 x{check.pct(50) / health.pct(50):.2f}, "
        f"p99 x{check.pct(99) / health.pct(99):.2f}; goal p99 < 20 ms: {goal}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--codes", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=2000, help="per endpoint")
    parser.add_argument("--concurrency", default="1,4", help="comma-separated connection counts")
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    args = parser.parse_args()
    print(
        f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; "
        f"{args.requests} requests per endpoint and concurrency ({args.concurrency} connections)",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as folder:
        for db in ("sqlite", "postgres") if args.db == "both" else (args.db,):
            bench(db, args.codes, args.requests, [int(c) for c in args.concurrency.split(",")], Path(folder))


if __name__ == "__main__":
    main()
