"""Fixtures for the certificate tests: the real app on a fresh SQLite file, seeded with demo people."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app import create_app
from certificates.service import CertificateService
from registry_client.embedded.demo import DEMO_PEOPLE, SITES, DemoPerson
from registry_client.models import Dose, DoseSource, NewDose, NewPerson, Person
from registry_client.resilience import ResilientRegistry
from settings import Settings

BASE_URL = "http://testserver"


def make_settings(database_url: str, data_dir: Path, **overrides: Any) -> Settings:
    return Settings(
        database_url=database_url,
        data_dir=data_dir,
        run_workers=False,
        public_base_url=BASE_URL,
        secret_key="certificate-tests-secret",
        **overrides,
    )


@dataclass
class CertApp:
    """The running app and handles to call its async parts from a sync test."""

    client: TestClient

    @property
    def service(self) -> CertificateService:
        service: CertificateService = self.client.app.state.certificates  # type: ignore[attr-defined]
        return service

    @property
    def registry(self) -> ResilientRegistry:
        registry: ResilientRegistry = self.client.app.state.registry  # type: ignore[attr-defined]
        return registry

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.client.portal.call(fn, *args)  # type: ignore[union-attr]

    def seed(self, people: tuple[DemoPerson, ...] = DEMO_PEOPLE) -> dict[str, Person]:
        async def run() -> dict[str, Person]:
            for site in SITES:
                await self.registry.upsert_site(site)
            made = {}
            for p in people:
                person = await self.registry.create_person(
                    NewPerson(p.national_id, p.date_of_birth, p.full_name, p.sex, p.phone), actor="test"
                )
                for number, vaccine, when, site_code, lot in p.doses:
                    await self.registry.record_dose(
                        person.id, NewDose(number, vaccine, when, site_code, lot, source=DoseSource.IMPORT)
                    )
                made[p.national_id] = person
            return made

        result: dict[str, Person] = self.call(run)
        return result

    def doses(self, person: Person) -> list[Dose]:
        doses: list[Dose] = self.call(self.registry.list_doses, person.id)
        return doses

    def path(self, url: str) -> str:
        assert url.startswith(BASE_URL + "/")
        return url[len(BASE_URL) :]


def start_app(settings: Settings) -> Iterator[CertApp]:
    with TestClient(create_app(settings)) as client:
        yield CertApp(client)


@pytest.fixture
def cert_app(sqlite_url: str, tmp_path: Path) -> Iterator[CertApp]:
    yield from start_app(make_settings(sqlite_url, tmp_path / "data"))


AN = DEMO_PEOPLE[0]  # Nguyễn Văn An: AstraZeneca ×2 and a Pfizer booster
BINH = DEMO_PEOPLE[1]  # one Vero Cell dose
CUONG = DEMO_PEOPLE[2]  # no dose on record
