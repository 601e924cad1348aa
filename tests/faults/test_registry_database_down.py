"""The database stops (a TCP proxy in front of PostgreSQL is cut).

1. The embedded registry's database (here a PostgreSQL database of its own, as when several channel
   services share one registry) stops while the service's database works: reads made before are
   answered from the cache with their age, a report is queued with its reference and filed exactly
   once when the database is back.
2. The service's own database stops too (the usual single-database deployment): every channel gets
   a polite "try again later" (never a 500), /healthz says 503, and when the database is back the
   USSD session goes on where it was.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from db.base import make_async_engine
from registry_client.embedded.registry import EmbeddedRegistry
from registry_client.models import CorrectionQuery
from tests.fakes.tcp_proxy import TcpProxy
from tests.faults.conftest import through
from tests.faults.service import (
    AN,
    BINH,
    REF,
    ManualTicks,
    Service,
    base_settings,
    expected,
    flat,
    running,
)
from web import observability


def proxied_engine(url: str) -> Any:
    return make_async_engine(url, pool_size=2, max_overflow=0, connect_args={"connect_timeout": 2})


@pytest.fixture
async def split_service(
    pg_demo: str, pg_proxy: TcpProxy, sqlite_url: str, tmp_path: Path
) -> AsyncIterator[tuple[Service, TcpProxy, ManualTicks]]:
    """The service on SQLite; its embedded registry on PostgreSQL behind the proxy."""
    registry_engine = proxied_engine(through(pg_proxy, pg_demo))
    settings = base_settings(sqlite_url, tmp_path / "data", registry_timeout_seconds=2.0)
    ticks = ManualTicks()

    async def use_remote_database(app: Any) -> None:
        app.state.registry.inner = EmbeddedRegistry(registry_engine)
        observability.instrument_registry_backend(app.state.registry.inner)
        app.state.registry.use_ticks(ticks)

    async with running(settings, prepare=use_remote_database) as service:
        yield service, pg_proxy, ticks
    await registry_engine.dispose()


async def cases_in_registry(pg_url: str, ref: str) -> int:
    """How many reports with this reference An has in the registry (read directly, no cache)."""
    engine = make_async_engine(pg_url)
    try:
        registry = EmbeddedRegistry(engine)
        person = await registry.find_person(AN[1], date(1985, 3, 14))
        cases = await registry.list_corrections(CorrectionQuery(person_id=person.id))
        return sum(1 for case in cases if case.ref == ref)
    finally:
        await engine.dispose()


async def test_registry_database_stops(
    split_service: tuple[Service, TcpProxy, ManualTicks], pg_demo: str
) -> None:
    service, proxy, ticks = split_service
    sms = service.sms(AN[0])
    assert (await sms.send(f"DK {AN[1]} {AN[2]}")).startswith(expected("login.code_sent"))
    assert expected("login.success", name="Nguyen Van An") in await sms.send(await service.last_code(AN[0]))
    fresh = await sms.whole(await sms.send("MUI"))
    assert "Mui 1: AstraZeneca" in fresh and expected("common.stale", minutes=1) not in flat(fresh)

    proxy.cut()

    status = await sms.whole(await sms.send("MUI"))
    assert "Mui 1: AstraZeneca, 02/08/2021" in status
    assert expected("common.stale", minutes=1) in flat(status), status

    # someone never read: the clear "unavailable" text
    assert await service.sms(BINH[0]).send(f"DK {BINH[1]} {BINH[2]}") == expected("common.registry_down")

    # a report by SMS: PA, missing (1), dose 2 (2), skip date/site/vaccine/workplace (9), this phone (1), send (1)
    for answer in ("PA", "1", "2", "9", "9", "9", "9", "1"):
        last = await sms.send(answer)
    assert last.startswith("Gui phan anh"), last
    done = await sms.send("1")
    ref = REF.search(done)[0]  # type: ignore[index]
    assert flat(done).startswith(expected("report.queued", ref=ref)), done
    assert await cases_in_registry(pg_demo, ref) == 0

    metrics = (await service.client.get("/metrics")).text
    assert re.search(r"^registry_pending_writes [1-9]", metrics, re.M), "queued writes not in /metrics"
    assert re.search(
        r'^registry_call_duration_seconds_count\{operation="list_doses",outcome="unavailable"\} [1-9]',
        metrics,
        re.M,
    )
    assert "registry_breaker_open 1.0" in metrics and 'registry_breaker_state{state="open"} 1.0' in metrics
    health = await service.client.get("/healthz")
    assert health.status_code == 200 and health.json()["degraded"]["registry"].startswith("circuit")

    proxy.restore()
    assert await service.state.registry.replay_pending() == 0  # the breaker is open: nothing tried yet
    ticks.advance(service.state.registry.breaker.cooldown)
    assert await service.state.registry.replay_pending() >= 1
    assert await service.state.registry.replay_pending() == 0
    assert await cases_in_registry(pg_demo, ref) == 1  # exactly once
    reply = await sms.send(f"KQ {ref}")
    assert reply.startswith(f"{ref}: dang xu ly tai"), reply
    health = (await service.client.get("/healthz")).json()
    assert "degraded" not in health, health


@pytest.fixture
async def single_database_service(
    pg_demo: str, pg_proxy: TcpProxy, tmp_path: Path
) -> AsyncIterator[tuple[Service, ManualTicks]]:
    """The usual deployment: service and embedded registry in one PostgreSQL database."""
    settings = base_settings(through(pg_proxy, pg_demo) + "?connect_timeout=2", tmp_path / "data")
    ticks = ManualTicks()

    async def pinned_ticks(app: Any) -> None:
        app.state.registry.use_ticks(ticks)

    async with running(settings, prepare=pinned_ticks) as service:
        yield service, ticks


# What each page answers while the database is down: none of these needs it, so each keeps its
# ordinary answer (the login page, the redirect to it, static pages, the key list from DATA_DIR, the
# human 404 of a bad link) — never a 500.
WHILE_DOWN = {
    "/agent/login": 200,
    "/agent/": 303,
    "/verify": 200,
    "/api/certificates/keys": 200,
    "/c/not-a-token": 404,
}


async def test_whole_database_stops(
    single_database_service: tuple[Service, ManualTicks], pg_proxy: TcpProxy
) -> None:
    service, ticks = single_database_service
    ussd = service.ussd(AN[0])
    await ussd.dial()
    assert flat(await ussd.answers("1", AN[1], AN[2])).startswith("CON " + expected("login.code_sent"))
    code = await service.last_code(AN[0])

    pg_proxy.cut()

    busy = expected("common.error")
    assert await service.ussd(BINH[0]).dial() == "END " + busy
    assert await service.sms(BINH[0]).send("MUI") == busy
    health = await service.client.get("/healthz")
    assert health.status_code == 503 and health.json()["status"] == "unavailable"
    assert (await service.client.get("/metrics")).status_code == 200
    answers = {path: (await service.client.get(path)).status_code for path in WHILE_DOWN}
    assert answers == WHILE_DOWN

    pg_proxy.restore()
    ticks.advance(service.state.registry.breaker.cooldown)

    # the caller's USSD session goes on at the code step
    screen = await ussd.whole(await ussd.send(code))
    assert "Nguyen Van An" in screen and "Mui 1: AstraZeneca" in screen, screen
    assert (await service.client.get("/healthz")).status_code == 200
