"""The Registry contract on the embedded registry, on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import func, select

from db.base import make_async_engine
from registry_client.embedded.registry import EmbeddedRegistry
from registry_client.embedded.tables import AuditRow
from tests.registry_client.contract import RegistryContract, seed_person


class TestEmbeddedRegistry(RegistryContract):
    @pytest.fixture
    async def registry(self, db_url: str) -> AsyncIterator[EmbeddedRegistry]:
        engine = make_async_engine(db_url)
        yield EmbeddedRegistry(engine)
        await engine.dispose()

    @pytest.fixture
    def audit_lines(self, registry: EmbeddedRegistry):  # type: ignore[no-untyped-def]
        async def read(person_id: str) -> list[tuple[str, str, str | None]]:
            async with registry._sessions() as s:
                rows = await s.scalars(select(AuditRow).where(AuditRow.person_id == person_id))
                return [(r.actor, r.action, r.detail) for r in rows.all()]

        return read

    async def test_due_dates_count_days_in_viet_nam(self, registry: EmbeddedRegistry) -> None:
        """18:30 UTC on Monday 9 March is 01:30 on Tuesday 10 March in Viet Nam: five working days
        from Tuesday is Tuesday 17 March (counted from the UTC Monday it would be the 16th)."""
        from datetime import UTC, datetime

        from registry_client.resilience import PendingWrites, ResilientRegistry
        from tests.registry_client.contract import missing_dose_report

        now = datetime(2026, 3, 9, 18, 30, tzinfo=UTC)
        registry._clock = lambda: now
        person = await seed_person(registry)
        case = await registry.submit_correction(missing_dose_report(person.id))
        assert case.due_on == date(2026, 3, 17)
        # and a report queued while the registry is down gets the same provisional due date
        queued = ResilientRegistry(
            registry, PendingWrites(registry._sessions, Path("unused")), clock=lambda: now
        )
        provisional = queued._provisional_case(missing_dose_report(person.id, ref="PA-TEST-01"))
        assert provisional.due_on == date(2026, 3, 17)

    async def test_audit_is_stored(self, registry: EmbeddedRegistry) -> None:
        from registry_client.models import AuditEntry

        person = await seed_person(registry)
        await registry.audit(AuditEntry("agent:lan", "person.view", person.id))
        async with registry._sessions() as s:
            assert await s.scalar(select(func.count()).select_from(AuditRow)) == 1
