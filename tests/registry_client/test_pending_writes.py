"""The durable queue of registry writes: nothing it is given is lost.

1. Audit lines written while the FHIR registry is down (it has no `audit_many`, so each goes
   through `audit`): two lines of the same actor, action and instant are two lines in the queue
   and two AuditEvents once the registry is back.
2. The file journal (the database down too): a line another worker appends while the journal is
   being ingested is kept.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import async_sessionmaker

from db.base import make_async_engine
from registry_client.fhir.registry import FhirRegistry
from registry_client.models import AuditEntry
from registry_client.pending_writes import PendingWriteRow
from registry_client.resilience import CircuitBreaker, PendingWrites, ResilientRegistry
from tests.fakes.tcp_proxy import TcpProxy
from tests.fhir.fixtures import fhir_server  # noqa: F401 - fixture
from tests.fhir.server import FhirTestServer


@pytest.fixture
async def local(sqlite_url: str) -> AsyncIterator[Any]:
    engine = make_async_engine(sqlite_url)
    yield async_sessionmaker(engine, expire_on_commit=False)
    await engine.dispose()


def audit_events_by(server: FhirTestServer, actor: str) -> int:
    with server.client() as client:
        bundle = client.get("AuditEvent", params={"_count": "1000"}).json()
    return sum(
        1
        for e in bundle.get("entry", [])
        if any(a.get("altId") == actor for a in e["resource"].get("agent", []))
    )


async def test_alike_audit_lines_all_reach_the_registry_after_an_outage(
    fhir_server: FhirTestServer,  # noqa: F811
    local: Any,
    tmp_path: Path,
) -> None:
    proxy = TcpProxy("127.0.0.1", fhir_server.port)
    backend = FhirRegistry(
        f"http://127.0.0.1:{proxy.port}{fhir_server.base}", auth=fhir_server.auth, timeout=1.0
    )
    ticks = [0.0]
    registry = ResilientRegistry(
        backend,
        PendingWrites(local, tmp_path / "journal.jsonl"),
        timeout=2.0,
        attempts=1,
        breaker=CircuitBreaker(threshold=1, cooldown=10, clock=lambda: ticks[0]),
    )
    actor = f"sms:+8490{uuid.uuid4().int % 10**7:07d}"
    at = datetime(2026, 12, 4, 8, 30, 0, 123456, tzinfo=UTC)
    try:
        proxy.cut()
        for _ in range(3):  # one caller looking at the same record three times within a microsecond
            await registry.audit(AuditEntry(actor, "doses.view", "p-1", "status", at=at))
        async with local() as session:
            queued = await session.scalar(
                select(func.count()).select_from(PendingWriteRow).where(PendingWriteRow.operation == "audit")
            )
        assert queued == 3

        proxy.restore()
        ticks[0] += 11  # the breaker's cool-down is over
        assert await registry.replay_pending() == 3
        assert await registry.replay_pending() == 0
        assert audit_events_by(fhir_server, actor) == 3
    finally:
        await backend.close()
        proxy.close()


async def test_a_line_appended_while_the_journal_is_ingested_is_kept(
    local: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = tmp_path / "journal.jsonl"
    dead = make_async_engine(
        "postgresql+psycopg://postgres@127.0.0.1:1/none", connect_args={"connect_timeout": 1}
    )
    other_worker = PendingWrites(async_sessionmaker(dead), journal)  # its database is down: it journals
    await other_worker.put("PA-AAAA-11", "submit_correction", {"n": 1})
    assert len(journal.read_text().splitlines()) == 1

    ingesting = PendingWrites(local, journal)
    real_replace = Path.replace
    appended: list[str] = []

    def replace_while_the_other_worker_appends(self: Path, target: Any) -> Path:
        if self == journal and not appended:  # the other worker writes at the moment of the rename
            appended.append("PA-BBBB-22")
            with journal.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps({"key": "PA-BBBB-22", "operation": "submit_correction", "payload": {}}))
                fh.write("\n")
        return real_replace(self, target)

    monkeypatch.setattr(Path, "replace", replace_while_the_other_worker_appends)
    await ingesting.ingest_journal()
    monkeypatch.undo()
    await ingesting.ingest_journal()  # whatever went to a fresh journal meanwhile

    keys = sorted(row.key for row in await ingesting.open_items())
    assert appended == ["PA-BBBB-22"]
    assert keys == ["PA-AAAA-11", "PA-BBBB-22"]
    assert not journal.with_suffix(".ingesting").exists()
    assert not journal.exists() or all(
        json.loads(line)["key"] in keys for line in journal.read_text().splitlines()
    )
    await dead.dispose()
