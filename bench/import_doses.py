"""Benchmark of `python main.py import-doses` on PostgreSQL.

    python bench/import_doses.py [--rows 1000000]

Generates N deterministic rows, writes the CSV to a temporary directory, creates a fresh PostgreSQL database on 127.0.0.1 (user postgres),
runs the import as a child process (`python main.py import-doses`, so its peak RSS is the
import's own), runs it again on the same file (the idempotent re-import), and drops the database.
The baseline of the same run is reading the same file with the csv module alone.

The generator is reusable (e.g. for a 10M-person registry): `generate_persons(count)` yields
synthetic persons (unique CCCD/CMND, DOB consistent with the CCCD, shared family phones, 1–4
doses), `generate_rows(rows)` turns them into import rows, `write_csv(path, rows)` writes a file:

    from bench.import_doses import generate_persons, write_csv
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from registry_client.embedded.demo import FAMILY, GIVEN_F, GIVEN_M, MIDDLE_F, MIDDLE_M  # noqa: E402
from registry_client.embedded.import_rows import COLUMNS  # noqa: E402

# Province codes of the CCCD (the first three digits).
PROVINCES = (
    1, 2, 4, 6, 8, 10, 11, 12, 14, 15, 17, 19, 20, 22, 24, 25, 26, 27, 30, 31, 33, 34, 35, 36, 37, 38,
    40, 42, 44, 45, 46, 48, 49, 51, 52, 54, 56, 58, 60, 62, 64, 66, 67, 68, 70, 72, 74, 75, 77, 79, 80,
    82, 83, 84, 86, 87, 89, 91, 92, 93, 94, 95, 96,
)  # fmt: skip
MIDDLE = {"M": MIDDLE_M, "F": MIDDLE_F}
GIVEN = {"M": GIVEN_M, "F": GIVEN_F}
# how sites write the vaccine: common names and EU DCC product codes
VACCINES = (
    "AstraZeneca", "EU/1/21/1529", "Pfizer", "EU/1/20/1528", "Moderna", "EU/1/20/1507", "Vero Cell",
    "BBIBP-CorV", "Sinopharm", "Sputnik V", "Abdala", "Hayat-Vax", "Janssen",
)  # fmt: skip
SITES = 700
FIRST_DAY = date(2021, 3, 8)
LAST_DAY = date(2023, 6, 30)


@dataclass(frozen=True)
class SyntheticPerson:
    national_id: str
    full_name: str
    date_of_birth: date
    sex: str
    phone: str  # E.164
    doses: tuple[tuple[int, str, str, date, str], ...]  # number, vaccine, lot, date, site code


def site_name(code_number: int) -> str:
    return f"Trạm Y tế số {code_number} – Phường {code_number % 97 + 1}"


def national_id_for(index: int, sex: str, born: date) -> str:
    """Unique per index (for index < 63,000,000): a CCCD for 9 in 10 persons, else a 9-digit CMND."""
    if index % 10 == 9:
        return f"{100_000_000 + index:09d}"
    century = (born.year // 100 - 19) * 2 + (1 if sex == "F" else 0)
    province = PROVINCES[(index // 1_000_000) % len(PROVINCES)]
    return f"{province:03d}{century}{born.year % 100:02d}{index % 1_000_000:06d}"


def generate_persons(count: int, *, seed: int = 2021, first_index: int = 0) -> Iterator[SyntheticPerson]:
    """Deterministic synthetic persons with 1–4 doses each; persons[i] depends only on (seed, i)."""
    for index in range(first_index, first_index + count):
        rng = random.Random(seed * 1_000_003 + index)
        sex = "M" if rng.random() < 0.5 else "F"
        born = date(1935, 1, 1) + timedelta(days=rng.randrange(0, 365 * 75))
        name = f"{rng.choice(FAMILY)} {rng.choice(MIDDLE[sex])} {rng.choice(GIVEN[sex])}"
        family_head = index - index % 4 if index % 7 == 0 else index  # some phones serve a family
        phone = f"+849{(family_head * 7_919 + 10_000_000) % 90_000_000 + 10_000_000:08d}"
        n = rng.choices((1, 2, 3, 4), weights=(15, 40, 35, 10))[0]
        vaccine = rng.choice(VACCINES)
        site = f"S{rng.randrange(1, SITES + 1):04d}"
        when = max(FIRST_DAY, born + timedelta(days=18 * 365)) + timedelta(days=rng.randrange(0, 280))
        doses = []
        for number in range(1, n + 1):
            if when > LAST_DAY:
                break
            product = vaccine if number <= 2 else rng.choice(("Pfizer", "Moderna", "EU/1/20/1528"))
            doses.append((number, product, f"L{rng.randrange(100_000, 999_999)}", when, site))
            when += timedelta(days=rng.randrange(28, 150))
        if not doses:
            doses.append((1, vaccine, f"L{rng.randrange(100_000, 999_999)}", LAST_DAY, site))
        yield SyntheticPerson(national_id_for(index, sex, born), name, born, sex, phone, tuple(doses))


def phone_as_written(phone: str, rng: random.Random) -> str:
    """The same E.164 number in one of the forms sites write: 0901234567, +84…, 84 90 123 4567."""
    national = phone[3:]
    form = rng.randrange(3)
    if form == 0:
        return "0" + national
    if form == 1:
        return phone
    return f"84 {national[:2]} {national[2:5]} {national[5:]}"


def generate_rows(
    rows: int, *, seed: int = 2021, bad_every: int = 1000, shuffle_window: int = 5000
) -> Iterator[list[str]]:
    """Exactly `rows` import rows (docs/import-file.md column order); one row in `bad_every` is malformed.

    Rows of a person stay near each other but are shuffled within a window, so a person's doses
    may fall in different batches of the importer.
    """
    rng = random.Random(seed)
    persons = generate_persons(10**12, seed=seed)
    produced = 0
    while produced < rows:
        window: list[list[str]] = []
        while len(window) < shuffle_window:
            p = next(persons)
            for number, vaccine, lot, when, site in p.doses:
                window.append(
                    [
                        p.national_id,
                        p.full_name,
                        p.date_of_birth.isoformat(),
                        p.sex,
                        phone_as_written(p.phone, rng),
                        str(number),
                        vaccine,
                        lot,
                        when.isoformat(),
                        site,
                        site_name(int(site[1:])),
                    ]
                )
        rng.shuffle(window)
        for row in window:
            if produced == rows:
                return
            produced += 1
            if bad_every and produced % bad_every == 0:
                row[6] = "Vaccine-X"  # unknown vaccine: a rejected row
            yield row


def write_csv(path: Path, rows: int, *, seed: int = 2021) -> None:
    with open(path, "w", encoding="utf-8", newline="") as f:
        out = csv.writer(f)
        out.writerow(COLUMNS)
        out.writerows(generate_rows(rows, seed=seed))


# -- running the import -------------------------------------------------------------------------
class ServerCpu(threading.Thread):
    """CPU seconds used by the PostgreSQL backends serving one database (sampled from /proc)."""

    def __init__(self, admin_url: str, database: str) -> None:
        super().__init__(daemon=True)
        self._admin_url, self._database = admin_url, database
        self._seen: dict[int, float] = {}
        self._done = threading.Event()

    def run(self) -> None:
        tick = os.sysconf("SC_CLK_TCK")
        with psycopg.connect(self._admin_url, autocommit=True) as conn:
            while not self._done.wait(0.25):
                rows = conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = %s", (self._database,)
                ).fetchall()
                for (pid,) in rows:
                    try:
                        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                    except OSError:
                        continue
                    self._seen[pid] = max(
                        self._seen.get(pid, 0.0), (int(fields[11]) + int(fields[12])) / tick
                    )

    def stop(self) -> float:
        self._done.set()
        self.join()
        return sum(self._seen.values())


@dataclass
class Run:
    seconds: float
    peak_rss_mb: float
    exit_code: int
    output: str
    cpu_seconds: float = 0.0  # the import process
    server_cpu_seconds: float = 0.0  # its PostgreSQL backends

    def reported_rate(self) -> str:
        for line in self.output.splitlines():
            if line.strip().startswith("time"):
                return line.split("(", 1)[1].rstrip(")")
        return "?"


def run_import(csv_path: Path, database_url: str, admin_url: str, database: str) -> Run:
    env = {**os.environ, "DATABASE_URL": database_url}
    server = ServerCpu(admin_url, database)
    server.start()
    started = time.monotonic()
    child = subprocess.Popen(
        [sys.executable, str(ROOT / "main.py"), "import-doses", str(csv_path)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert child.stdout is not None
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.monotonic() - started
    return Run(
        seconds,
        usage.ru_maxrss / 1024,
        child.returncode,
        output,
        usage.ru_utime + usage.ru_stime,
        server.stop(),
    )


def csv_read_baseline(csv_path: Path) -> float:
    started = time.monotonic()
    with open(csv_path, encoding="utf-8", newline="") as f:
        n = sum(1 for _ in csv.reader(f)) - 1
    return n / (time.monotonic() - started)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=2021)
    parser.add_argument(
        "--pg-admin", default=os.environ.get("TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/test")
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="import-bench-") as tmp:
        csv_path = Path(tmp) / "doses.csv"
        started = time.monotonic()
        write_csv(csv_path, args.rows, seed=args.seed)
        size_mb = csv_path.stat().st_size / 2**20
        print(
            f"generated {args.rows:,} rows ({size_mb:,.0f} MB) in {time.monotonic() - started:.1f}s",
            flush=True,
        )
        baseline = csv_read_baseline(csv_path)

        name = f"vaxbench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(args.pg_admin, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        url = (
            args.pg_admin.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1) + "/" + name
        )
        try:
            print(f"load average before the import: {os.getloadavg()[0]:.1f}", flush=True)
            first = run_import(csv_path, url, args.pg_admin, name)
            print(f"load average before the re-import: {os.getloadavg()[0]:.1f}", flush=True)
            second = run_import(csv_path, url, args.pg_admin, name)
            with psycopg.connect(url.replace("+psycopg", "")) as conn:
                persons, doses = conn.execute(
                    "SELECT (SELECT count(*) FROM persons), (SELECT count(*) FROM doses)"
                ).fetchone() or (0, 0)
        finally:
            with psycopg.connect(args.pg_admin, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    print(first.output)
    print(second.output)
    print(f"stored: {persons:,} persons, {doses:,} doses")
    print(f"baseline: csv.reader alone        {baseline:>10,.0f} rows/s")
    for label, run in (("first import", first), ("re-import (idempotent)", second)):
        rate = args.rows / run.seconds
        print(
            f"{label:<24} exit {run.exit_code}  {run.seconds:6.1f}s wall  {rate:>9,.0f} rows/s wall"
            f" (import itself: {run.reported_rate()})  peak RSS {run.peak_rss_mb:,.0f} MB"
            f"  = {rate / baseline:.2f}× the csv-read baseline"
        )
        print(
            f"{'':<24} CPU per row: import process {run.cpu_seconds / args.rows * 1e6:.0f} µs,"
            f" PostgreSQL backends {run.server_cpu_seconds / args.rows * 1e6:.0f} µs"
            f" (machine load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)"
        )
    ok = first.exit_code == 0 and second.exit_code == 0
    goal = args.rows / first.seconds >= 20_000 and first.peak_rss_mb < 300
    print(f"goal (>= 20,000 rows/s and < 300 MB at first import): {'met' if goal else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
