"""Status-lookup latency (find_person + list_doses) through FHIR vs the embedded registry, one run.

    python bench/registry_latency.py [--persons 300] [--lookups 400]

Both registries get the same persons and doses (seeded through the Registry protocol). FHIR is the
Medplum FhirRouter + MemoryRepository test server (tests/fhir_server, `npm ci --prefix tests/fhir_server`)
on 127.0.0.1, reached over HTTP with connection pooling; embedded is SQLite in a temporary file.
Lookups alternate between the two backends so both see the same machine noise.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from db.base import make_async_engine  # noqa: E402
from db.migrate import migrate  # noqa: E402
from registry_client.embedded.registry import EmbeddedRegistry  # noqa: E402
from registry_client.fhir.registry import FhirRegistry  # noqa: E402
from registry_client.models import NewDose, NewPerson, Sex, Site  # noqa: E402
from registry_client.protocol import Registry  # noqa: E402
from tests.fhir.server import FhirTestServer  # noqa: E402

SITES = (Site("HN001", "Trạm Y tế Phường Dịch Vọng", "Hà Nội"), Site("HCM07", "Bệnh viện Quận 7", "TP HCM"))


def people(count: int) -> list[tuple[NewPerson, list[NewDose]]]:
    rng = random.Random(7)
    out = []
    for i in range(count):
        dob = date(1950, 1, 1) + timedelta(days=rng.randrange(365 * 60))
        person = NewPerson(f"0010{dob.year % 100:02d}{i:06d}", dob, f"Nguyễn Văn {i}", Sex.MALE, f"+849{i:08d}")
        doses = [
            NewDose(n, "AstraZeneca" if n < 3 else "Pfizer", date(2021, 6 + 2 * n, 1), SITES[i % 2].code, f"L{i}-{n}")
            for n in range(1, rng.randint(1, 3) + 1)
        ]
        out.append((person, doses))
    return out


async def seed(registry: Registry, data: list[tuple[NewPerson, list[NewDose]]]) -> None:
    for site in SITES:
        await registry.upsert_site(site)
    for person, doses in data:
        stored = await registry.create_person(person, actor="bench")
        for dose in doses:
            await registry.record_dose(stored.id, dose)


async def lookup(registry: Registry, person: NewPerson) -> float:
    started = time.perf_counter()
    found = await registry.find_person(person.national_id, person.date_of_birth)
    doses = await registry.list_doses(found.id)
    elapsed = time.perf_counter() - started
    assert doses, "every benchmark person has doses"
    return elapsed * 1000


def summary(name: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return f"{name:<22} p50 {p50:7.2f} ms   p99 {p99:7.2f} ms   mean {statistics.fmean(ordered):7.2f} ms"


async def main(persons: int, lookups: int) -> None:
    data = people(persons)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        migrate(url)
        engine = make_async_engine(url)
        embedded = EmbeddedRegistry(engine)
        server = FhirTestServer().start()
        fhir = FhirRegistry(server.base_url, auth=server.auth)
        try:
            t0 = time.perf_counter()
            await seed(embedded, data)
            t1 = time.perf_counter()
            await seed(fhir, data)
            t2 = time.perf_counter()
            print(f"seeded {persons} persons: embedded {t1 - t0:.1f} s, FHIR {t2 - t1:.1f} s")
            rng = random.Random(11)
            for person, _ in data[:20]:  # warm up both (connections, caches, SQLite pages)
                await lookup(embedded, person)
                await lookup(fhir, person)
            times: dict[str, list[float]] = {"embedded": [], "fhir": []}
            for _ in range(lookups):
                person = rng.choice(data)[0]
                pair = [("embedded", embedded), ("fhir", fhir)]
                rng.shuffle(pair)
                for name, registry in pair:
                    times[name].append(await lookup(registry, person))
            print(f"status lookup = find_person + list_doses, {lookups} lookups each, interleaved")
            print(summary("embedded (SQLite)", times["embedded"]))
            print(summary("FHIR (Medplum, HTTP)", times["fhir"]))
            ratio50 = statistics.median(times["fhir"]) / statistics.median(times["embedded"])
            print(f"FHIR / embedded p50 ratio: {ratio50:.1f}x")
        finally:
            await fhir.close()
            server.stop()
            await engine.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, default=300)
    parser.add_argument("--lookups", type=int, default=400)
    args = parser.parse_args()
    asyncio.run(main(args.persons, args.lookups))
