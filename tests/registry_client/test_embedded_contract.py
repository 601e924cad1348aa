"""The Registry contract on the embedded registry, on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator

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

    async def test_audit_is_stored(self, registry: EmbeddedRegistry) -> None:
        from registry_client.models import AuditEntry

        person = await seed_person(registry)
        await registry.audit(AuditEntry("agent:lan", "person.view", person.id))
        async with registry._sessions() as s:
            assert await s.scalar(select(func.count()).select_from(AuditRow)) == 1
