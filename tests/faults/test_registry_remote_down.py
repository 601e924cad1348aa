"""The remote FHIR registry (the Medplum test server behind a TCP proxy) goes down, or answers too
slowly, while citizens log in, look at their doses and report a missing dose over /ussd and
/sms/twilio. Reads already made are answered from the cache with their age; a report gets its
reference and a "saved, will be passed on" answer, and reaches the registry exactly once when it
is back; what cannot be answered gets the catalogue's "records system unavailable" text."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from conversations.text import ddmmyyyy
from registry_client.embedded.demo import load_demo
from registry_client.fhir import codes
from tests.fakes.tcp_proxy import TcpProxy
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
from tests.fhir.server import FhirTestServer

REGISTRY_TIMEOUT = 0.5


@pytest.fixture
async def fhir_service(
    fhir_server: FhirTestServer, sqlite_url: str, tmp_path: Path
) -> AsyncIterator[tuple[Service, TcpProxy, FhirTestServer, ManualTicks]]:
    proxy = TcpProxy("127.0.0.1", fhir_server.port)
    settings = base_settings(
        sqlite_url,
        tmp_path / "data",
        registry_backend="fhir",
        registry_url=f"http://127.0.0.1:{proxy.port}{fhir_server.base}",
        registry_auth=fhir_server.auth,
        registry_timeout_seconds=REGISTRY_TIMEOUT,
    )

    ticks = ManualTicks()

    async def seed(app: Any) -> None:
        await load_demo(app.state.registry.inner, 0)  # over FHIR
        app.state.registry.use_ticks(ticks)  # the breaker's 15 s cool-down passes when the test says

    try:
        async with running(settings, prepare=seed) as service:
            yield service, proxy, fhir_server, ticks
    finally:
        fhir_server.set_delay(0)
        proxy.close()


def tasks_for(server: FhirTestServer, ref: str) -> int:
    with server.client() as client:
        found = client.get("Task", params={"identifier": f"{codes.CASE_REF}|{ref}"}).json()
    return int(found["total"])


async def writes_carried_out(server: FhirTestServer, timeout: float = 30) -> None:
    """The barrier after a slow spell: every POST/PUT that reached the server has been carried out
    (the server counts writes when they arrive and records them when done)."""
    deadline = time.monotonic() + timeout
    while True:
        arrived = sum(n for key, n in server.requests().items() if key.startswith(("POST ", "PUT ")))
        if len(server.written()) >= arrived:
            return
        assert time.monotonic() < deadline, f"{arrived} writes arrived, {len(server.written())} carried out"
        await asyncio.sleep(0.05)


async def login_and_see_doses(service: Service) -> str:
    an = service.ussd(AN[0])
    await an.dial()
    assert flat(await an.answers("1", AN[1], AN[2])).startswith("CON " + expected("login.code_sent"))
    return await an.send(await service.last_code(AN[0]))


async def file_report(service: Service) -> str:
    an = service.ussd(AN[0])
    await an.dial()
    # report (3): missing dose (1), dose 2 (2), date/site/vaccine/workplace skipped (9), this phone (1)
    confirm = await an.answers("3", "1", "2", "9", "9", "9", "9", "1")
    assert confirm.startswith("CON Gui phan anh"), confirm
    return await an.send("1")


async def test_registry_down_during_status_login_and_report(
    fhir_service: tuple[Service, TcpProxy, FhirTestServer, ManualTicks],
) -> None:
    service, proxy, server, ticks = fhir_service
    fresh = await login_and_see_doses(service)
    assert "Mui 1: AstraZeneca, 02/08/2021" in fresh and expected("common.stale", minutes=1) not in fresh

    proxy.cut()  # the registry is gone: connections dropped, new ones refused
    ticks.advance(7 * 60)  # seven minutes after the doses were read

    an = service.ussd(AN[0])
    await an.dial()
    status = await an.whole(await an.send("1"))  # dose status: from the cache, saying how old it is
    assert "Mui 1: AstraZeneca, 02/08/2021" in status and "Mui 3 (nhac lai): Pfizer, 10/03/2022" in status
    assert expected("common.stale", minutes=7) in flat(status), status

    # someone whose record was never read: a clear "unavailable", no code is sent, nothing half-done
    reply = await service.sms(BINH[0]).send(f"DK {BINH[1]} {BINH[2]}")
    assert reply == expected("common.registry_down")
    assert await service.outbox_to(BINH[0], "otp") == []

    # a report: the reference at once, "saved, will be passed on"; the photo link still goes out
    done = await file_report(service)
    found = REF.search(done)
    assert found is not None, done
    ref = found[0]
    assert done.startswith("END ") and flat(done).startswith(
        "END " + expected("report.queued", ref=ref) + " " + expected("report.photo_ussd")
    ), done
    assert [m.params["ref"] for m in await service.outbox_to(AN[0], "upload_link")] == [ref]
    assert await service.state.registry.pending.count_open() >= 1
    # the caller can check it meanwhile (SMS from the same phone)
    # (the phone's right to see it is read from the cache, so the answer says how old that is)
    assert await service.sms(AN[0]).send(f"KQ {ref}") == expected("check.queued", ref=ref) + "\n" + expected(
        "common.stale", minutes=7
    )
    health = (await service.client.get("/healthz")).json()
    assert health["status"] == "ok" and "registry" in health["degraded"], health
    assert await service.state.registry.replay_pending() == 0  # still down: kept, not dropped

    proxy.restore()
    assert await service.state.registry.replay_pending() == 0  # the breaker is still open: nothing tried
    assert service.state.registry.breaker.state == "open"
    ticks.advance(service.state.registry.breaker.cooldown)  # the cool-down is over: a trial call
    assert service.state.registry.breaker.state == "half-open"
    replayed = await service.state.registry.replay_pending()  # the report (and audit lines)
    for _ in range(5):
        # on a loaded machine one answer may still take longer than REGISTRY_TIMEOUT: the rest
        # waits for the next tick (and the breaker's cool-down if that timeout re-opened it)
        if await service.state.registry.pending.count_open() == 0:
            break
        ticks.advance(service.state.registry.breaker.cooldown)
        replayed += await service.state.registry.replay_pending()
    assert replayed >= 1
    assert await service.state.registry.pending.count_open() == 0
    assert await service.state.registry.replay_pending() == 0  # nothing left to send
    await writes_carried_out(server)
    assert tasks_for(server, ref) == 1  # delivered exactly once, even if a slow answer was retried

    case = await service.state.registry.get_correction(ref)
    assert not case.queued and case.site_code == "HN002"  # routed like any other report
    site = await service.state.registry.get_site("HN002")
    assert await service.sms(AN[0]).send(f"KQ {ref}") == expected(
        "check.open", ref=ref, site=site.name, due=ddmmyyyy(case.due_on)
    )
    # and a fresh status has no age note any more
    await an.dial()
    assert expected("common.stale", minutes=1) not in flat(await an.whole(await an.send("1")))

    proxy.cut()  # down again: the report's state is answered from the cache, with its age
    checked = expected("check.open", ref=ref, site=site.name, due=ddmmyyyy(case.due_on))
    stale = await service.sms(AN[0]).send(f"KQ {ref}")
    assert stale == checked + "\n" + expected("common.stale", minutes=1), stale


async def test_registry_too_slow(
    fhir_service: tuple[Service, TcpProxy, FhirTestServer, ManualTicks],
) -> None:
    """Every FHIR answer takes 2 s (four times REGISTRY_TIMEOUT_SECONDS). A USSD gateway cuts a hop
    at ~15 s, so each registry call gives up after one timeout, retries included (it used to take
    `attempts x timeout`: 5 s for this turn, 50 s with the default 5 s timeout) — and the turn
    still answers from the cache, or queues the report."""
    service, _, server, ticks = fhir_service
    await login_and_see_doses(service)
    server.set_delay(2000)

    an = service.ussd(AN[0])
    await an.dial()
    server.requests(clear=True), server.written(clear=True)  # counted from here on
    status = await an.whole(await an.send("1"))
    assert expected("common.stale", minutes=1) in flat(status) and "Mui 2: AstraZeneca" in status
    # four registry calls (the person, the doses, two audit lines of the access), each given up
    # after its one time budget: one request each reached the registry, no retry after the budget
    # (per-attempt timeouts would have sent `attempts` = 3 requests per call, taking 3 x the budget)
    # (on a loaded machine a request may not even reach the server within its budget, and the
    # breaker may open before the last audit line is tried: at most one request per call, then)
    seen = server.requests()
    assert set(seen) <= {"GET Patient", "GET Immunization", "POST AuditEvent"}, seen
    assert seen.get("GET Patient", 0) <= 1 and seen.get("GET Immunization", 0) <= 1, seen
    assert seen.get("POST AuditEvent", 0) <= 2 and sum(seen.values()) >= 1, seen

    done = await file_report(service)
    ref = REF.search(done)[0]  # type: ignore[index]
    assert flat(done).startswith("END " + expected("report.queued", ref=ref)), done

    server.set_delay(0)
    await writes_carried_out(server)  # the slow POSTs the server was still carrying out are done
    ticks.advance(service.state.registry.breaker.cooldown)
    await service.state.registry.replay_pending()
    assert await service.state.registry.pending.count_open() == 0
    assert tasks_for(server, ref) == 1  # even if a timed-out attempt reached the server
