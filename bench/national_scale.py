"""The embedded registry at national scale on PostgreSQL: lookups and the dose import.

    python bench/national_scale.py [--persons 10000000] [--import-rows 1000000]
        [--lookups 5000] [--concurrency 8] [--keep] [--reuse DATABASE] [--no-import]

1. Creates a fresh database on 127.0.0.1 (user postgres), migrates it (`db.migrate.migrate`), and
   fills it by COPY ... FREEZE: N persons, their phones (families share one), 2 N doses, the
   sites; secondary indexes and foreign keys are dropped for the load and rebuilt from their own
   catalog definitions afterwards (checked identical), then VACUUM ANALYZE. Deterministic (seeded);
   rows: `bench/national_registry_data.py`.
2. Times `EmbeddedRegistry.find_person`, `find_persons_by_phone` and `list_doses` on random
   stored keys (after a warm-up), sequentially and from concurrent tasks, against the floor of
   this machine: `SELECT 1` on a pooled connection of the same engine (as the registry's reads
   run), beside the driver alone and an ORM session transaction (as the registry's writes run).
   Prints the plans of the statements the registry sent (EXPLAIN ANALYZE) and their server time.
3. Imports a `bench/import_doses.py` file (half new persons, half stored persons bringing their
   further doses) with `python main.py import-doses` in a child process, then once more.
4. Drops the database (unless --keep).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import import_doses  # noqa: E402
import national_registry_data as data  # noqa: E402
from sqlalchemy import event, text  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker  # noqa: E402

from db.base import make_async_engine  # noqa: E402
from db.fast_access import FastAccess  # noqa: E402
from db.migrate import migrate  # noqa: E402
from registry_client.embedded.registry import EmbeddedRegistry  # noqa: E402
from registry_client.errors import RecordNotFound  # noqa: E402

TABLES = ("persons", "contacts", "doses")
BYTES_PER_PERSON = 1_000  # measured ~750 (rows, indexes) at 1 M; the rest is WAL and the import
EXPECTED_INDEXES = {
    "find_person": ("uq_persons_identity", "ix_contacts_person"),
    "find_persons_by_phone": ("ix_contacts_phone",),
    "list_doses": ("uq_doses_person_number",),
}


def say(message: str) -> None:
    print(message, flush=True)


# -- the database ------------------------------------------------------------------------------
def check_disk(conn: psycopg.Connection[Any], persons: int) -> None:
    need = persons * BYTES_PER_PERSON
    data_dir = str(conn.execute("SHOW data_directory").fetchone()[0])  # type: ignore[index]
    for where in (str(Path(__file__).resolve().parents[1]), data_dir):  # this checkout, the database
        free = shutil.disk_usage(where).free
        say(f"disk: {free / 2**30:,.1f} GiB free at {where} (this size needs about {need / 2**30:,.1f} GiB)")
        if free < need * 1.5:
            raise SystemExit(f"not enough disk at {where}: run a smaller size with --persons")


def catalog(conn: psycopg.Connection[Any]) -> tuple[list[tuple[str, ...]], list[tuple[str, ...]]]:
    """Constraints (unique, foreign) and the indexes that back no constraint, of the bulk tables."""
    tables = list(TABLES)
    constraints = conn.execute(
        "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid), contype::text"
        " FROM pg_constraint WHERE conrelid::regclass::text = ANY(%s) AND contype IN ('u', 'f')"
        " ORDER BY contype DESC, conname",
        (tables,),
    ).fetchall()
    indexes = conn.execute(
        "SELECT i.indrelid::regclass::text, c.relname::text, pg_get_indexdef(i.indexrelid)"
        " FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " WHERE i.indrelid::regclass::text = ANY(%s) AND NOT EXISTS (SELECT 1 FROM pg_constraint k"
        "  WHERE k.conindid = i.indexrelid AND k.conrelid = i.indrelid AND k.contype IN ('p', 'u', 'x'))"
        " ORDER BY 2",
        (tables,),
    ).fetchall()
    return constraints, indexes


def load(url: str, layout: data.Layout) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = off")
        conn.execute("SET maintenance_work_mem = '1GB'")
        before = catalog(conn)
        constraints, indexes = before
        for table, name, _definition, _kind in constraints:  # foreign keys first (sorted 'f' < 'u')
            conn.execute(f"ALTER TABLE {table} DROP CONSTRAINT {name}")
        for _table, name, _definition in indexes:
            conn.execute(f"DROP INDEX {name}")
        say(f"dropped for the load: {', '.join(c[1] for c in constraints + indexes)}")

        started = time.monotonic()
        data.copy_table(conn, "sites", data.site_lines(), import_doses.SITES)
        expected = {"persons": layout.count, "contacts": layout.count * 21 // 20, "doses": 2 * layout.count}
        for table in TABLES:
            rows, seconds = data.copy_table(conn, table, data.LOADERS[table](layout), expected[table])
            say(f"COPY {table:<9} {rows:>12,} rows in {seconds:7.1f}s = {rows / seconds:>9,.0f} rows/s")
        copied = time.monotonic() - started

        started = time.monotonic()
        for table, name, definition in indexes:
            step = time.monotonic()
            conn.execute(definition)
            say(f"  index {name} on {table}: {time.monotonic() - step:.1f}s")
        for table, name, definition, _kind in sorted(constraints, key=lambda c: c[3], reverse=True):
            step = time.monotonic()  # unique constraints ('u') before foreign keys ('f')
            conn.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} {definition}")
            say(f"  constraint {name} on {table}: {time.monotonic() - step:.1f}s")
        for table in TABLES:
            conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
            )
        rebuilt = time.monotonic() - started
        if catalog(conn) != before:
            raise SystemExit("the rebuilt indexes and constraints differ from the migrated schema")

        started = time.monotonic()
        for table in ("sites", *TABLES):
            conn.execute(f"VACUUM ANALYZE {table}")
        say(
            f"load: COPY {copied:.0f}s, indexes and constraints {rebuilt:.0f}s (same definitions as migrated),"
            f" VACUUM ANALYZE {time.monotonic() - started:.0f}s"
        )
        for table in ("sites", *TABLES):
            rows, size, idx = conn.execute(
                "SELECT reltuples::bigint, pg_table_size(oid), pg_indexes_size(oid) FROM pg_class"
                " WHERE oid = %s::regclass",
                (table,),
            ).fetchone()  # type: ignore[misc]
            say(
                f"  {table:<9} ~{rows:>12,} rows  table {size / 2**20:>7,.0f} MiB  indexes {idx / 2**20:>6,.0f} MiB"
            )
        total = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]  # type: ignore[index]
        say(f"  database size {total / 2**30:.2f} GiB")


def counts(url: str) -> str:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM persons), (SELECT count(*) FROM contacts), (SELECT count(*) FROM doses)"
        ).fetchone()
    persons, contacts, doses = row or (0, 0, 0)
    return f"{persons:,} persons, {contacts:,} contacts, {doses:,} doses"


# -- lookups -----------------------------------------------------------------------------------
def percentile(sorted_ms: Sequence[float], p: float) -> float:
    return sorted_ms[min(len(sorted_ms) - 1, int(len(sorted_ms) * p))]


Op = tuple[str, Callable[[Any], Awaitable[Any]], list[Any]]


async def interleaved(
    ops: Sequence[Op], first: int, count: int, concurrency: int, seed: int
) -> tuple[dict[str, list[float]], float]:
    """Latencies (ms, sorted) per call and the total calls/s: key i of every op, in a random order
    per i, from `concurrency` tasks; so every call, the SELECT 1 floor included, meets the same noise
    of this shared machine."""
    latencies: dict[str, list[float]] = {label: [] for label, _op, _keys in ops}
    pending = iter(range(first, first + count))
    rng = random.Random(seed)

    async def worker() -> None:
        for i in pending:
            for label, op, keys in rng.sample(list(ops), len(ops)):
                start = time.perf_counter()
                await op(keys[i])
                latencies[label].append((time.perf_counter() - start) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    rate = count * len(ops) / (time.perf_counter() - started)
    return {label: sorted(values) for label, values in latencies.items()}, rate


def row(label: str, mode: str, latencies: list[float]) -> str:
    p50, p95, p99 = (percentile(latencies, p) for p in (0.50, 0.95, 0.99))
    return f"{label:<34} {mode:<13} {len(latencies):>6} {p50:>7.2f} {p95:>7.2f} {p99:>7.2f} {latencies[-1]:>8.2f}"


async def explain(engine: AsyncEngine, registry: EmbeddedRegistry, calls: dict[str, Any]) -> bool:
    """EXPLAIN ANALYZE of the statements each registry call sends; True when the indexes are used."""
    sent: list[tuple[str, Any]] = []

    def capture(
        _conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool
    ) -> None:
        sent.append((statement, parameters))

    # the registry's reads run on the hot-path helper's own pooled engine (db.fast_access)
    watched = [engine.sync_engine, FastAccess.for_engine(engine)._postgres().sync_engine]
    all_used = True
    for name, call in calls.items():
        sent.clear()
        for target in watched:
            event.listen(target, "before_cursor_execute", capture)
        try:
            await call()
        finally:
            for target in watched:
                event.remove(target, "before_cursor_execute", capture)
        plans = []
        async with engine.connect() as conn:
            for statement, parameters in list(sent):
                result = await conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
                plans.append(" ".join(statement.split()) + "\n" + "\n".join(f"    {r[0]}" for r in result))
        joined = "\n".join(plans)
        server_ms = sum(float(t) for t in re.findall(r"(?:Planning|Execution) Time: ([0-9.]+) ms", joined))
        missing = [ix for ix in EXPECTED_INDEXES[name] if ix not in joined]
        all_used = all_used and not missing
        say(
            f"\n-- {name}: {len(plans)} statement(s), {server_ms:.3f} ms in the server (planning + execution); "
            + (f"NOT using {missing}" if missing else "uses ")
            + (", ".join(EXPECTED_INDEXES[name]) if not missing else "")
        )
        for plan in plans:
            say(plan)
    return all_used


async def lookups(url: str, layout: data.Layout, args: argparse.Namespace) -> None:
    engine = make_async_engine(url)
    registry = EmbeddedRegistry(engine)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    rng = random.Random(layout.seed + 7)
    total = args.warmup + args.lookups
    indices = rng.sample(range(layout.first, layout.end), total)
    keys = [layout.key(i) for i in indices]
    phones = [layout.phone(i) for i in rng.sample(range(layout.first, layout.end), total)]
    person_ids = [str(layout.person_id(i)) for i in rng.sample(range(layout.first, layout.end), total)]
    family: Counter[int] = Counter()

    async def engine_select_one(_key: Any) -> None:  # as the registry's reads: pooled connection, Core
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def session_select_one(_key: Any) -> None:  # as the registry's writes: ORM session + transaction
        async with sessions() as session, session.begin():
            await session.execute(text("SELECT 1"))

    raw = await psycopg.AsyncConnection.connect(url.replace("+psycopg", ""), autocommit=True)

    async def raw_select_one(_key: Any) -> None:  # the driver alone: one connection, no pool, no ORM
        await raw.execute("SELECT 1")

    async def find_person(key: Any) -> None:
        try:
            person = await registry.find_person(*key)
        except RecordNotFound:
            raise AssertionError(f"a stored person was not found: {key}") from None
        assert person.national_id == key[0], (person, key)

    async def by_phone(phone: str) -> None:
        found = await registry.find_persons_by_phone(phone)
        assert found, phone
        family[len(found)] += 1

    async def list_doses(person_id: str) -> None:
        assert await registry.list_doses(person_id)

    ops: list[Op] = [
        ("SELECT 1 (engine.connect: floor)", engine_select_one, list(range(total))),
        ("SELECT 1 (raw psycopg, 1 conn)", raw_select_one, list(range(total))),
        ("SELECT 1 (ORM session + txn)", session_select_one, list(range(total))),
        ("find_person(national_id, dob)", find_person, keys),
        ("find_persons_by_phone(phone)", by_phone, phones),
        ("list_doses(person_id)", list_doses, person_ids),
    ]
    try:
        await interleaved(ops, 0, args.warmup, args.concurrency, layout.seed)  # connections, caches
        say(f"\nlookups on {counts(url.replace('+psycopg', ''))}; warm-up {args.warmup} each, then:")
        say(f"{'call':<34} {'mode':<13} {'n':>6} {'p50 ms':>7} {'p95':>7} {'p99':>7} {'max':>8}")
        results: dict[tuple[str, int], list[float]] = {}
        for concurrency in (1, args.concurrency):
            by_call, rate = await interleaved(ops, args.warmup, args.lookups, concurrency, layout.seed)
            mode = "sequential" if concurrency == 1 else f"{concurrency} concurrent"
            for label, latencies in by_call.items():
                results[(label, concurrency)] = latencies
                say(row(label, mode, latencies))
            say(f"{'':<34} {mode:<13} all calls interleaved: {rate:,.0f} calls/s")
        sizes = ", ".join(f"{n}: {c:,}" for n, c in sorted(family.items()))
        say(f"persons found per phone (all phone lookups, warm-up included): {sizes}")
        say(
            f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; PostgreSQL shared_buffers"
            f" {await _setting(engine, 'shared_buffers')}, the rest served from the OS page cache)"
        )
        for concurrency in (1, args.concurrency):
            goal = True
            for label in (ops[3][0], ops[4][0]):
                p99 = percentile(results[(label, concurrency)], 0.99)
                floor = percentile(results[(ops[0][0], concurrency)], 0.99)
                goal = goal and p99 < 5.0
                say(
                    f"  {label:<32} c={concurrency}: p99 {p99:.2f} ms = {p99 / floor:.1f}× the engine SELECT 1 p99 ({floor:.2f})"
                )
            mode = "sequential" if concurrency == 1 else f"{concurrency} concurrent tasks"
            say(f"goal (p99 < 5 ms for both lookups, {mode}): {'met' if goal else 'NOT met'}")

        index, stored_pid = indices[0], str(layout.person_id(indices[0]))
        used = await explain(
            engine,
            registry,
            {
                "find_person": lambda: registry.find_person(*layout.key(index)),
                "find_persons_by_phone": lambda: registry.find_persons_by_phone(layout.phone(index)),
                "list_doses": lambda: registry.list_doses(stored_pid),
            },
        )
        say(f"\nplans use the expected indexes: {'yes' if used else 'NO'}")
    finally:
        await raw.close()
        await engine.dispose()


async def _setting(engine: AsyncEngine, name: str) -> str:
    async with engine.connect() as conn:
        return str((await conn.exec_driver_sql(f"SHOW {name}")).scalar())


# -- the import --------------------------------------------------------------------------------
def import_benchmark(url: str, admin: str, database: str, layout: data.Layout, rows: int) -> bool:
    plain = url.replace("+psycopg", "")
    with tempfile.TemporaryDirectory(prefix="national-import-") as tmp:
        csv_path = Path(tmp) / "doses.csv"
        started = time.monotonic()
        import_doses.write_csv(csv_path, rows, seed=layout.seed)
        say(
            f"\nimport file: {rows:,} rows ({csv_path.stat().st_size / 2**20:,.0f} MB) in"
            f" {time.monotonic() - started:.0f}s; generator persons 0..{layout.overlap_end - 1:,},"
            f" of which {layout.first:,} are new and the rest stored (holding 1–3 of their doses)"
        )
        say(f"before: {counts(plain)}")
        baseline = import_doses.csv_read_baseline(csv_path)
        ok = True
        for label in ("first import", "re-import (idempotent)"):
            run = import_doses.run_import(csv_path, url, admin, database)
            rate = rows / run.seconds
            listed = [line for line in run.output.splitlines() if line.startswith("  line ")]
            shown = [line for line in run.output.splitlines() if not line.startswith("  line ")]
            say("\n".join(shown).rstrip() + (f" ({len(listed)} listed lines not shown)" if listed else ""))
            say(
                f"{label:<24} exit {run.exit_code}  {run.seconds:6.1f}s wall  {rate:>9,.0f} rows/s"
                f" (import itself: {run.reported_rate()})  peak RSS {run.peak_rss_mb:,.0f} MB"
                f"  = {rate / baseline:.2f}× the csv-read baseline ({baseline:,.0f} rows/s)"
            )
            say(
                f"{'':<24} CPU per row: import process {run.cpu_seconds / rows * 1e6:.0f} µs,"
                f" PostgreSQL backends {run.server_cpu_seconds / rows * 1e6:.0f} µs;"
                f" load average {os.getloadavg()[0]:.1f}"
            )
            say(f"after: {counts(plain)}")
            ok = ok and run.exit_code == 0
        return ok


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--persons", type=int, default=10_000_000, help="persons (doses = 2 × persons)")
    parser.add_argument("--seed", type=int, default=2021)
    parser.add_argument("--import-rows", type=int, default=1_000_000, help="0: no import benchmark")
    parser.add_argument(
        "--import-new-share", type=float, default=0.5, help="share of the file's rows that are new persons"
    )
    parser.add_argument(
        "--no-import",
        action="store_true",
        help="skip the import benchmark (the layout still leaves room for it)",
    )
    parser.add_argument("--lookups", type=int, default=5_000)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--keep", action="store_true", help="keep the database (its name is printed)")
    parser.add_argument(
        "--reuse",
        metavar="DATABASE",
        help="a database kept by an earlier run with the same --persons, --seed, --import-rows and --import-new-share",
    )
    parser.add_argument(
        "--pg-admin", default=os.environ.get("TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/test")
    )
    args = parser.parse_args()

    started = time.monotonic()
    layout = data.plan_layout(args.seed, args.persons, args.import_rows, args.import_new_share)
    say(
        f"layout: {layout.count:,} persons = generator indices {layout.first:,}..{layout.end - 1:,}"
        f" (those below {layout.overlap_end:,} exactly as bench/import_doses.py makes them), seed {args.seed}"
    )
    name = args.reuse or f"vaxnational_{uuid.uuid4().hex[:10]}"
    base = args.pg_admin.rsplit("/", 1)[0]
    url = base.replace("postgresql://", "postgresql+psycopg://", 1) + "/" + name
    with psycopg.connect(args.pg_admin, autocommit=True) as admin:
        check_disk(admin, 0 if args.reuse else layout.count)
        if not args.reuse:
            admin.execute(f'CREATE DATABASE "{name}"')
    say(f"database {name}")
    ok = False
    try:
        if not args.reuse:
            migrate(url)
            load(f"{base}/{name}", layout)
            say(f"generated and loaded in {time.monotonic() - started:.0f}s")
        asyncio.run(lookups(url, layout, args))
        ok = (
            args.no_import
            or not args.import_rows
            or import_benchmark(url, args.pg_admin, name, layout, args.import_rows)
        )
    finally:
        if args.keep:
            say(f'kept database {name} (drop it with: DROP DATABASE "{name}")')
        else:
            with psycopg.connect(args.pg_admin, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            say(f"dropped database {name}")
    say(f"total {time.monotonic() - started:.0f}s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
