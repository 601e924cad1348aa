"""Two workers (two engines on one database) issue certificates for the same persons at the same
moment: each person ends with exactly one live certificate, and both workers hand out that one.

The rule used to be kept by a per-process lock only; the database now keeps it (a partial unique
index on the person's unrevoked certificate)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import psycopg
import pytest
from alembic import command
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from certificates.service import build_certificate_service
from certificates.tables import IssuedCertificateRow
from db.base import make_async_engine, make_sessionmaker, make_sync_engine
from db.migrate import alembic_config, migrate
from registry_client.embedded.registry import EmbeddedRegistry
from registry_client.models import DoseSource, NewDose, NewPerson, Sex, Site
from tests.certificates.conftest import make_settings
from tests.conftest import PG_ADMIN_URL

PERSONS = 8


async def live_per_person(sessions) -> dict[str, int]:  # type: ignore[no-untyped-def]
    async with sessions() as session:
        rows = await session.execute(
            select(IssuedCertificateRow.person_id, func.count())
            .where(IssuedCertificateRow.revoked_at.is_(None))
            .group_by(IssuedCertificateRow.person_id)
        )
        return {person_id: count for person_id, count in rows.all()}


async def test_two_workers_issuing_at_once_leave_one_live_certificate(db_url: str, tmp_path: Path) -> None:
    settings = make_settings(db_url, tmp_path / "shared-data")
    engines = [make_async_engine(db_url), make_async_engine(db_url)]
    try:
        workers = [build_certificate_service(settings, make_sessionmaker(e)) for e in engines]
        registry = EmbeddedRegistry(engines[0])
        await registry.upsert_site(Site("HN001", "Trạm Y tế Phường Dịch Vọng", "Hà Nội"))
        people = []
        for i in range(PERSONS):
            person = await registry.create_person(
                NewPerson(f"0011900{i:05d}", date(1990, 1, 2), "Đỗ Thị Hoa", Sex.FEMALE, None), actor="t"
            )
            await registry.record_dose(person.id, NewDose(1, "Moderna", date(2021, 9, 1), "HN001", "M1"))
            people.append((person, await registry.list_doses(person.id)))

        # first issue: nobody has a certificate yet
        first = await asyncio.gather(*(w.issue(p, d) for p, d in people for w in workers))
        live = await live_per_person(make_sessionmaker(engines[0]))
        assert live == {p.id: 1 for p, _ in people}
        for i in range(PERSONS):  # both workers answered with the one stored certificate
            assert first[2 * i].uvci == first[2 * i + 1].uvci

        # a correction: both workers reissue at once; one new live certificate, the old one revoked
        changed = []
        for person, _ in people:
            fixed = NewDose(1, "Moderna", date(2021, 9, 2), "HN001", "M1", source=DoseSource.CORRECTION)
            await registry.record_dose(person.id, fixed)
            changed.append((person, await registry.list_doses(person.id)))
        second = await asyncio.gather(*(w.issue(p, d) for p, d in changed for w in workers))
        assert await live_per_person(make_sessionmaker(engines[0])) == {p.id: 1 for p, _ in people}
        for i in range(PERSONS):
            assert second[2 * i].uvci == second[2 * i + 1].uvci != first[2 * i].uvci
            assert (await workers[1].verify(first[2 * i].hc1)).code == "revoked"
            assert (await workers[0].verify(second[2 * i].hc1)).valid
    finally:
        for engine in engines:
            await engine.dispose()


async def test_the_database_refuses_a_second_live_certificate(db_url: str) -> None:
    """The index itself, without the service: a second unrevoked row for one person is refused."""
    engine = make_async_engine(db_url)
    sessions = make_sessionmaker(engine)
    try:

        def row(uvci: str) -> IssuedCertificateRow:
            now = date(2026, 1, 1)
            return IssuedCertificateRow(
                person_id="p1",
                uvci=uvci,
                fingerprint="f" * 64,
                kid="00" * 8,
                issued_at=now,
                expires_at=now,
                dose_count=1,
                latest_dose_on=now,
                hc1="HC1:x",
            )

        async with sessions() as session, session.begin():
            session.add(row("URN:UVCI:01:VN:A"))
        with pytest.raises(IntegrityError):
            async with sessions() as session, session.begin():
                session.add(row("URN:UVCI:01:VN:B"))
    finally:
        await engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    name = f"vaxold_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield f"{PG_ADMIN_URL.rsplit('/', 1)[0].replace('postgresql://', 'postgresql+psycopg://', 1)}/{name}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_the_migration_revokes_duplicates_left_by_earlier_versions(empty_database: str) -> None:
    """A database where two workers once left two live certificates for a person: the migration
    keeps the newest live, revokes the other (so /api/verify says so), then adds the index."""
    config = alembic_config(empty_database)
    command.upgrade(config, "0002")  # the certificates table as earlier versions had it
    engine = make_sync_engine(empty_database)
    try:
        insert = text(
            "INSERT INTO issued_certificates (person_id, uvci, fingerprint, kid, issued_at, expires_at,"
            " dose_count, latest_dose_on, hc1) VALUES (:p, :u, 'f', '00', :at, :at, 1, :d, 'HC1:x')"
        )
        at, day = datetime(2026, 1, 1, tzinfo=UTC), date(2021, 9, 1)
        with engine.begin() as conn:
            for person, uvci in (("p1", "A"), ("p1", "B"), ("p2", "C")):
                conn.execute(insert, {"p": person, "u": uvci, "at": at, "d": day})
        migrate(empty_database)
        with engine.begin() as conn:
            rows = conn.execute(
                text("SELECT uvci, revoked_at IS NULL, revoke_reason FROM issued_certificates ORDER BY uvci")
            ).all()
            assert [tuple(r) for r in rows] == [
                ("A", False, "superseded by correction/import"),
                ("B", True, None),
                ("C", True, None),
            ]
            with pytest.raises(IntegrityError):
                conn.execute(insert, {"p": "p1", "u": "D", "at": at, "d": day})
    finally:
        engine.dispose()
