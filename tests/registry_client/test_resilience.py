"""ResilientRegistry against a real PostgreSQL registry behind a proxy we cut and restore."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from db.base import make_async_engine, make_sessionmaker
from registry_client.embedded.registry import EmbeddedRegistry
from registry_client.errors import RegistryUnavailable
from registry_client.models import CaseStatus, CorrectionQuery, Site
from registry_client.pending_writes import PendingWriteRow
from registry_client.resilience import (
    CircuitBreaker,
    PendingWrites,
    ResilientRegistry,
    reset_stale_marker,
    served_stale_age,
)
from tests.fakes.tcp_proxy import TcpProxy
from tests.registry_client.contract import missing_dose_report, seed_person


@pytest.fixture
def proxy(pg_url: str) -> Iterator[TcpProxy]:
    parts = urlsplit(pg_url)
    p = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    yield p
    p.close()


@pytest.fixture
async def setup(pg_url: str, sqlite_url: str, proxy: TcpProxy, tmp_path: Path) -> AsyncIterator[tuple]:
    parts = urlsplit(pg_url)
    proxied = pg_url.replace(f"{parts.hostname}:{parts.port}", f"127.0.0.1:{proxy.port}")
    backend_engine = make_async_engine(
        proxied, pool_size=2, max_overflow=0, connect_args={"connect_timeout": 2}
    )
    local_engine = make_async_engine(sqlite_url)  # the service's own database keeps the queue
    inner = EmbeddedRegistry(backend_engine)
    pending = PendingWrites(make_sessionmaker(local_engine), tmp_path / "journal.jsonl")
    clock = [0.0]
    breaker = CircuitBreaker(threshold=2, cooldown=30, clock=lambda: clock[0])
    registry = ResilientRegistry(
        inner, pending, timeout=3, attempts=2, breaker=breaker, cache_ttl=600, ticks=lambda: clock[0]
    )
    yield registry, inner, local_engine, clock
    await backend_engine.dispose()
    await local_engine.dispose()


async def test_reads_served_from_cache_with_their_age_when_down(setup, proxy: TcpProxy) -> None:
    registry, inner, _, clock = setup
    person = await seed_person(inner)
    reset_stale_marker()
    fresh = await registry.find_person(person.national_id, person.date_of_birth)
    assert served_stale_age() is None
    proxy.cut()
    clock[0] += 90
    stale = await registry.find_person(person.national_id, person.date_of_birth)
    assert stale == fresh
    assert served_stale_age() == 90  # the age of what was served, by the wrapper's clock
    with pytest.raises(RegistryUnavailable):  # never read before: nothing to serve
        await registry.get_person("999999")
    clock[0] += 600  # older than the cache keeps an answer: unavailable, not a stale answer
    reset_stale_marker()
    with pytest.raises(RegistryUnavailable):
        await registry.find_person(person.national_id, person.date_of_birth)
    assert served_stale_age() is None


async def test_breaker_opens_and_half_opens(setup, proxy: TcpProxy) -> None:
    registry, inner, _, clock = setup
    await seed_person(inner)
    proxy.cut()
    for _ in range(2):
        with pytest.raises(RegistryUnavailable):
            await registry.list_sites()
    assert registry.breaker.state == "open"
    with pytest.raises(RegistryUnavailable, match="circuit open"):
        await registry.list_sites()
    proxy.restore()
    clock[0] += 31
    assert registry.breaker.state == "half-open"
    await registry.list_sites()
    assert registry.breaker.state == "closed"


async def test_report_queued_while_down_and_replayed_exactly_once(setup, proxy: TcpProxy) -> None:
    registry, inner, local_engine, clock = setup
    person = await seed_person(inner)
    await inner.upsert_site(Site("HN001", "Trạm Y tế Dịch Vọng"))
    proxy.cut()
    case = await registry.submit_correction(missing_dose_report(person.id, site="HN001"))
    assert case.queued and case.status == CaseStatus.RECEIVED and case.ref.startswith("PA-")
    assert (await registry.get_correction(case.ref)).queued  # the citizen can check it already
    assert await registry.replay_pending() == 0  # still down: stays queued
    proxy.restore()
    clock[0] += 31
    assert await registry.replay_pending() == 1
    assert await registry.replay_pending() == 0  # exactly once
    stored = await inner.get_correction(case.ref)
    assert stored.site_code == "HN001" and not stored.queued
    assert len(await inner.list_corrections(CorrectionQuery(person_id=person.id))) == 1
    async with make_sessionmaker(local_engine)() as s:
        row = await s.scalar(select(PendingWriteRow))
        assert row is not None and row.done_at is not None and row.result_ref == case.ref


async def test_journal_keeps_reports_when_the_local_database_is_down_too(
    tmp_path: Path, proxy: TcpProxy
) -> None:
    proxy.cut()
    dead = make_async_engine(
        f"postgresql+psycopg://postgres@127.0.0.1:{proxy.port}/test", connect_args={"connect_timeout": 1}
    )
    pending = PendingWrites(make_sessionmaker(dead), tmp_path / "journal.jsonl")
    registry = ResilientRegistry(EmbeddedRegistry(dead), pending, timeout=2, attempts=1)
    case = await registry.submit_correction(missing_dose_report("1", site=None))
    assert case.queued
    journal = (tmp_path / "journal.jsonl").read_text()
    assert case.ref in journal
    await dead.dispose()


async def test_timeout_counts_as_unavailable(setup, proxy: TcpProxy, pg_url: str) -> None:
    registry, inner, _, _ = setup
    await seed_person(inner)
    registry.timeout = 0.3
    await inner._engine.dispose()  # new connections go through the slow proxy
    proxy.delay = 1.0
    with pytest.raises(RegistryUnavailable):
        await registry.list_sites()
