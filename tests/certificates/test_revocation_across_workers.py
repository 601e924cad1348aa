"""Two workers share one database (SQLite and PostgreSQL): a reissue in one revokes in the other."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from certificates.service import SUPERSEDED, build_certificate_service
from certificates.verification import REVOKED
from db.base import make_async_engine, make_sessionmaker
from registry_client.embedded.registry import EmbeddedRegistry
from registry_client.models import DoseSource, NewDose, NewPerson, Sex, Site
from tests.certificates.conftest import make_settings


async def test_reissue_in_one_worker_revokes_in_another(db_url: str, tmp_path: Path) -> None:
    settings = make_settings(db_url, tmp_path / "shared-data")
    engines = [make_async_engine(db_url), make_async_engine(db_url)]
    try:
        first, second = (build_certificate_service(settings, make_sessionmaker(e)) for e in engines)
        second.revocations.refresh_seconds = 0  # look at the database on every verification
        registry = EmbeddedRegistry(engines[0])
        await registry.upsert_site(Site("HN001", "Trạm Y tế Phường Dịch Vọng", "Hà Nội"))
        person = await registry.create_person(
            NewPerson("001190000001", date(1990, 1, 2), "Đỗ Thị Hoa", Sex.FEMALE, "+84901000001"), actor="t"
        )
        await registry.record_dose(person.id, NewDose(1, "Moderna", date(2021, 9, 1), "HN001", "M1"))
        old = await first.issue(person, await registry.list_doses(person.id))
        assert (await second.verify(old.hc1)).valid  # the other worker has loaded an empty list

        fixed = NewDose(1, "Moderna", date(2021, 9, 2), "HN001", "M1", source=DoseSource.CORRECTION)
        await registry.record_dose(person.id, fixed)
        new = await first.issue(person, await registry.list_doses(person.id))
        assert new.uvci != old.uvci and new.kid == old.kid  # one DATA_DIR, one signing key

        seen_elsewhere = await second.verify(old.hc1)
        assert not seen_elsewhere.valid and seen_elsewhere.code == REVOKED
        assert seen_elsewhere.reason == f"revoked: {SUPERSEDED}"
        assert (await second.verify(new.hc1)).valid
        assert (await second.current_for_person(person.id)).uvci == new.uvci  # type: ignore[union-attr]
        assert (await first.verify(old.hc1)).code == REVOKED  # noted at once where it happened
    finally:
        for engine in engines:
            await engine.dispose()
