"""Faults against the real FHIR server: it stops mid-test and comes back, it answers too slowly,
and another writer changes a resource between our read and our write (412)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker

from db.base import make_async_engine
from registry_client.errors import Conflict, InvalidRequest, RegistryUnavailable
from registry_client.fhir import codes
from registry_client.fhir.http import FhirHttp
from registry_client.fhir.registry import FhirRegistry
from registry_client.models import CaseStatus, ContactChange, Decision, NewDose, Resolution
from registry_client.resilience import (
    CircuitBreaker,
    PendingWrites,
    ResilientRegistry,
    reset_stale_marker,
    served_stale_age,
)
from tests.faults.service import ManualTicks
from tests.fhir.server import FhirTestServer
from tests.registry_client.contract import HN, missing_dose_report, seed_person


@pytest.fixture
async def own_server(tmp_path: Path) -> AsyncIterator[FhirTestServer]:
    """A server of this test alone, journaling its data so that a restart keeps it."""
    server = FhirTestServer(data_file=tmp_path / "fhir-store.jsonl").start()
    yield server
    server.stop()


@pytest.fixture
async def pending(sqlite_url: str, tmp_path: Path) -> AsyncIterator[PendingWrites]:
    engine = make_async_engine(sqlite_url)
    yield PendingWrites(async_sessionmaker(engine, expire_on_commit=False), tmp_path / "pending.jsonl")
    await engine.dispose()


def task_count(server: FhirTestServer, ref: str) -> int:
    with server.client() as client:
        return int(client.get("Task", params={"identifier": f"{codes.CASE_REF}|{ref}"}).json()["total"])


async def test_server_stops_and_comes_back(own_server: FhirTestServer, pending: PendingWrites) -> None:
    backend = FhirRegistry(own_server.base_url, auth=own_server.auth, timeout=1.0)
    registry = ResilientRegistry(
        backend, pending, timeout=2.0, breaker=CircuitBreaker(threshold=3, cooldown=0.3)
    )
    ticks = ManualTicks()
    registry.use_ticks(ticks)  # the breaker's cool-down passes when the test says so, not after a sleep
    try:
        person = await seed_person(registry)
        await registry.upsert_site(HN)
        await registry.record_dose(person.id, NewDose(1, "AstraZeneca", date(2021, 8, 1), "HN001", "AZ1"))
        found = await registry.find_person("001085001234", date(1985, 3, 14))
        doses = await registry.list_doses(person.id)

        own_server.stop()  # mid-test
        with pytest.raises(RegistryUnavailable):
            await backend.find_person("001085001234", date(1985, 3, 14))
        reset_stale_marker()
        assert await registry.find_person("001085001234", date(1985, 3, 14)) == found  # cached read
        assert await registry.list_doses(person.id) == doses
        age = served_stale_age()
        assert age is not None and age >= 0
        queued = await registry.submit_correction(missing_dose_report(person.id, site="HN001"))
        assert queued.queued and queued.status == CaseStatus.RECEIVED
        assert await pending.count_open() == 1
        assert (await registry.get_correction(queued.ref)).queued  # the citizen can check it meanwhile
        assert await registry.replay_pending() == 0  # still down: nothing lost, nothing sent

        own_server.start()  # same port, same journal: the registry kept its data
        ticks.advance(0.35)  # the breaker's cool-down is over
        assert await registry.replay_pending() == 1
        assert await registry.replay_pending() == 0
        assert await pending.count_open() == 0
        assert task_count(own_server, queued.ref) == 1  # exactly once
        case = await registry.get_correction(queued.ref)
        assert not case.queued and case.site_code == "HN001" and case.person_id == person.id
        assert [d.dose_number for d in await registry.list_doses(person.id)] == [1]
    finally:
        await registry.close()


async def test_replay_whose_answer_was_lost_is_not_filed_twice(
    fhir_server: FhirTestServer, pending: PendingWrites
) -> None:
    """The server stores the report but its answer never arrives: the replay finds it by reference."""
    backend = FhirRegistry(fhir_server.base_url, auth=fhir_server.auth, timeout=0.8)
    registry = ResilientRegistry(
        backend, pending, timeout=2.0, attempts=1, breaker=CircuitBreaker(cooldown=0)
    )
    try:
        person = await seed_person(registry)
        await registry.upsert_site(HN)
        fhir_server.set_delay(1200, method="POST", resource_type="Task")  # carried out after our timeout
        queued = await registry.submit_correction(missing_dose_report(person.id, site="HN001"))
        assert queued.queued
        deadline = time.monotonic() + 5
        while task_count(fhir_server, queued.ref) == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)  # meanwhile the server files it
        fhir_server.set_delay(0)
        assert task_count(fhir_server, queued.ref) == 1 and await pending.count_open() == 1
        assert await registry.replay_pending() == 1
        assert task_count(fhir_server, queued.ref) == 1  # not filed twice
        assert await registry.replay_pending() == 0
        assert (await registry.get_correction(queued.ref)).site_code == "HN001"
    finally:
        await registry.close()


async def test_slow_answers_time_out(fhir_server: FhirTestServer, pending: PendingWrites) -> None:
    backend = FhirRegistry(fhir_server.base_url, auth=fhir_server.auth, timeout=0.3)
    registry = ResilientRegistry(backend, pending, timeout=0.5, attempts=2)
    try:
        person = await seed_person(registry)
        found = await registry.get_person(person.id)
        fhir_server.set_delay(1500)
        with pytest.raises(RegistryUnavailable, match="timed out"):  # before the 1.5 s answer came
            await backend.get_person(person.id)
        reset_stale_marker()
        assert await registry.get_person(person.id) == found  # the wrapper answers from its cache
        assert served_stale_age() is not None
        with pytest.raises(RegistryUnavailable):
            await registry.find_person("001085001234", date(1985, 3, 14))  # never read: nothing cached
    finally:
        fhir_server.set_delay(0)
        await registry.close()


class ConcurrentWriter:
    """Before our PUT of a resource, another client changes that resource (so our If-Match is stale)."""

    def __init__(self, server: FhirTestServer, resource_type: str, times: int = 1) -> None:
        self.server, self.resource_type, self.times = server, resource_type, times
        self.statuses: list[int] = []

    async def before(self, request: httpx.Request) -> None:
        if request.method != "PUT" or f"/{self.resource_type}/" not in request.url.path or self.times == 0:
            return
        self.times -= 1
        with self.server.client() as other:
            current = other.get(request.url.path.split("/fhir/", 1)[1]).json()
            current.setdefault("telecom" if self.resource_type == "Patient" else "note", []).append(
                {"system": "email", "value": "other-writer@example.vn"}
                if self.resource_type == "Patient"
                else {"text": "another writer was here", "authorString": "other"}
            )
            version = current["meta"]["versionId"]
            other.put(
                f"{self.resource_type}/{current['id']}", json=current, headers={"If-Match": f'W/"{version}"'}
            )

    async def after(self, response: httpx.Response) -> None:
        if response.request.method == "PUT":
            self.statuses.append(response.status_code)

    async def __aenter__(self) -> FhirRegistry:
        self.client = httpx.AsyncClient(
            timeout=5, event_hooks={"request": [self.before], "response": [self.after]}
        )
        return FhirRegistry(
            self.server.base_url,
            http=FhirHttp(self.server.base_url, auth=self.server.auth, client=self.client),
        )

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()


async def test_412_on_contact_update_is_reread_and_reapplied(
    fhir_server: FhirTestServer, fhir_registry: FhirRegistry
) -> None:
    person = await seed_person(fhir_registry)
    writer = ConcurrentWriter(fhir_server, "Patient")
    async with writer as registry:
        updated = await registry.update_contact(
            person.id, ContactChange("+84987654321", "+84901234567", evidence="otp", actor="agent:lan")
        )
    assert writer.statuses == [412, 200]
    assert updated.current_phones == ("+84987654321",)
    with fhir_server.client() as client:
        telecom = client.get(f"Patient/{person.id}").json()["telecom"]
    assert "other-writer@example.vn" in [t["value"] for t in telecom]  # the other change survived
    old = next(t for t in telecom if t["value"] == "+84901234567")
    assert "end" in old["period"]


async def test_412_on_resolve_sees_the_other_decision(
    fhir_server: FhirTestServer, fhir_registry: FhirRegistry
) -> None:
    person = await seed_person(fhir_registry)
    await fhir_registry.upsert_site(HN)
    case = await fhir_registry.submit_correction(missing_dose_report(person.id, site="HN001"))

    class OtherResolver(ConcurrentWriter):
        async def before(self, request: httpx.Request) -> None:
            if request.method == "PUT" and "/Task/" in request.url.path and self.times:
                self.times -= 1
                await fhir_registry.resolve_correction(
                    case.ref, Resolution(Decision.REJECTED, "duplicate", "agent:an")
                )

    writer = OtherResolver(fhir_server, "Task")
    async with writer as registry:
        with pytest.raises(InvalidRequest, match="already rejected"):
            await registry.resolve_correction(
                case.ref, Resolution(Decision.APPROVED, "ok", "site:HN001/minh")
            )
    assert writer.statuses == [412]
    assert (await fhir_registry.get_correction(case.ref)).status == CaseStatus.REJECTED


async def test_endless_412_ends_in_conflict_not_overwrite(
    fhir_server: FhirTestServer, fhir_registry: FhirRegistry
) -> None:
    person = await seed_person(fhir_registry)
    writer = ConcurrentWriter(fhir_server, "Patient", times=100)
    async with writer as registry:
        with pytest.raises(Conflict):
            await registry.update_contact(
                person.id, ContactChange("+84987654321", None, evidence="otp", actor="x")
            )
    assert set(writer.statuses) == {412}
    assert "+84987654321" not in (await fhir_registry.get_person(person.id)).current_phones
