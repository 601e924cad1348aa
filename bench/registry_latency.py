"""Status-lookup latency (find_person + list_doses) through FHIR vs the embedded registry, one run.

    python bench/registry_latency.py [--sizes 50,300] [--lookups 200]

For each registry size both backends hold the same persons and doses. Embedded is SQLite in a
temporary file, seeded through the Registry protocol. FHIR is the Medplum FhirRouter +
MemoryRepository test server (tests/fhir_server; `npm ci --prefix tests/fhir_server`) on 127.0.0.1,
reached over HTTP with connection pooling; it is seeded with the very resources the FhirRegistry
writes (registry_client.fhir.mapping) by plain creates, because seeding through the protocol's
conditional creates costs O(n) per write on a repository that scans (O(n²) in all).
Lookups alternate between the backends in random order so both see the same machine noise.
A third line, a FHIR read of the Patient by id, is the HTTP + JSON round trip without any search:
MemoryRepository evaluates every search by scanning all resources of the type with FHIRPath, so
the FHIR figures grow with the registry size; a database-backed FHIR server indexes them.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from db.base import make_async_engine  # noqa: E402
from db.migrate import migrate  # noqa: E402
from registry_client.embedded.registry import EmbeddedRegistry  # noqa: E402
from registry_client.fhir import codes, mapping, sites  # noqa: E402
from registry_client.fhir.codes import IdentifierSystems  # noqa: E402
from registry_client.fhir.http import FhirHttp  # noqa: E402
from registry_client.fhir.registry import FhirRegistry  # noqa: E402
from registry_client.models import NewDose, NewPerson, Sex, Site  # noqa: E402
from registry_client.protocol import Registry  # noqa: E402
from registry_client.vaccines import lookup_product  # noqa: E402
from tests.fhir.server import FhirTestServer  # noqa: E402

SITES = (Site("HN001", "Trạm Y tế Phường Dịch Vọng", "Hà Nội"), Site("HCM07", "Bệnh viện Quận 7", "TP HCM"))


def people(count: int) -> list[tuple[NewPerson, list[NewDose]]]:
    rng = random.Random(7)
    out = []
    for i in range(count):
        dob = date(1950, 1, 1) + timedelta(days=rng.randrange(365 * 60))
        person = NewPerson(
            f"0010{dob.year % 100:02d}{i:06d}", dob, f"Nguyễn Văn {i}", Sex.MALE, f"+849{i:08d}"
        )
        doses = [
            NewDose(
                n,
                "AstraZeneca" if n < 3 else "Pfizer",
                date(2021, 6 + 2 * n, 1),
                SITES[i % 2].code,
                f"L{i}-{n}",
            )
            for n in range(1, rng.randint(1, 3) + 1)
        ]
        out.append((person, doses))
    return out


async def seed_embedded(registry: Registry, data: list[tuple[NewPerson, list[NewDose]]]) -> None:
    for site in SITES:
        await registry.upsert_site(site)
    for person, doses in data:
        stored = await registry.create_person(person, actor="bench")
        for dose in doses:
            await registry.record_dose(stored.id, dose)


async def seed_fhir(
    registry: FhirRegistry, auth: str | None, data: list[tuple[NewPerson, list[NewDose]]]
) -> list[str]:
    """The resources FhirRegistry writes, by plain creates (no conditional search). Returns Patient ids."""
    http, systems, now = FhirHttp(registry.base_url, auth=auth), IdentifierSystems(), datetime.now(UTC)
    locations = {}
    for site in SITES:
        await registry.upsert_site(site)
        (found,) = await http.search("Location", [("identifier", f"{codes.SITE_CODE}|{site.code}")])
        record = sites.SiteRecord(site, location_id=found["id"])
        locations[site.code] = sites.immunization_site(record, codes.SITE_CODE)
    patient_ids = []
    for person, doses in data:
        stored, _ = await http.create(mapping.patient_resource(person, systems, now, "bench"))
        patient_ids.append(stored.id)
        for dose in doses:
            product = lookup_product(dose.product)
            assert product is not None
            resource = mapping.immunization_resource(
                stored.id, dose.dose_number, product, dose.administered_on, dose.lot,
                locations[dose.site_code], dose.source, dose.recorded_by, now,
            )  # fmt: skip
            await http.create(resource)
    await http.close()
    return patient_ids


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


async def run_size(server: FhirTestServer, persons: int, lookups: int) -> None:
    data = people(persons)
    server.reset()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        migrate(url)
        engine = make_async_engine(url)
        embedded = EmbeddedRegistry(engine)
        fhir = FhirRegistry(server.base_url, auth=server.auth)
        try:
            await seed_embedded(embedded, data)
            patient_ids = await seed_fhir(fhir, server.auth, data)
            rng = random.Random(11)
            for person, _ in data[:10]:  # warm up both (connections, caches, SQLite pages)
                await lookup(embedded, person)
                await lookup(fhir, person)
            times: dict[str, list[float]] = {"embedded": [], "fhir": [], "read": []}
            for _ in range(lookups):
                index = rng.randrange(len(data))
                person = data[index][0]
                pair = [("embedded", embedded), ("fhir", fhir)]
                rng.shuffle(pair)
                for name, registry in pair:
                    times[name].append(await lookup(registry, person))
                started = time.perf_counter()
                await fhir.get_person(patient_ids[index])
                times["read"].append((time.perf_counter() - started) * 1000)
            doses = sum(len(d) for _, d in data)
            print(f"-- {persons} persons, {doses} doses; {lookups} lookups each")
            print(summary("embedded (SQLite)", times["embedded"]))
            print(summary("FHIR (Medplum memory)", times["fhir"]))
            print(summary("FHIR read by id only", times["read"]))
            ratio = statistics.median(times["fhir"]) / statistics.median(times["embedded"])
            print(f"   FHIR / embedded p50: {ratio:.1f}x")
        finally:
            await fhir.close()
            await engine.dispose()


async def main(sizes: list[int], lookups: int) -> None:
    server = FhirTestServer().start()
    print("status lookup = find_person + list_doses")
    try:
        for size in sizes:
            await run_size(server, size, lookups)
    finally:
        server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="50,300", help="registry sizes (persons), comma-separated")
    parser.add_argument("--lookups", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(main([int(x) for x in args.sizes.split(",")], args.lookups))
