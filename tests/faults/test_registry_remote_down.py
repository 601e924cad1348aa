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
from tests.faults.service import AN, BINH, REF, Service, base_settings, expected, flat, running
from tests.fhir.server import FhirTestServer

REGISTRY_TIMEOUT = 0.5


@pytest.fixture
async def fhir_service(
    fhir_server: FhirTestServer, sqlite_url: str, tmp_path: Path
) -> AsyncIterator[tuple[Service, TcpProxy, FhirTestServer]]:
    proxy = TcpProxy("127.0.0.1", fhir_server.port)
    settings = base_settings(
        sqlite_url,
        tmp_path / "data",
        registry_backend="fhir",
        registry_url=f"http://127.0.0.1:{proxy.port}{fhir_server.base}",
        registry_auth=fhir_server.auth,
        registry_timeout_seconds=REGISTRY_TIMEOUT,
    )

    async def seed(app: Any) -> None:
        await load_demo(app.state.registry.inner, 0)  # over FHIR
        app.state.registry.breaker.cooldown = 0.3  # the production 15 s would only slow the test

    try:
        async with running(settings, prepare=seed) as service:
            yield service, proxy, fhir_server
    finally:
        fhir_server.set_delay(0)
        proxy.close()


def tasks_for(server: FhirTestServer, ref: str) -> int:
    with server.client() as client:
        found = client.get("Task", params={"identifier": f"{codes.CASE_REF}|{ref}"}).json()
    return int(found["total"])


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
    fhir_service: tuple[Service, TcpProxy, FhirTestServer],
) -> None:
    service, proxy, server = fhir_service
    fresh = await login_and_see_doses(service)
    assert "Mui 1: AstraZeneca, 02/08/2021" in fresh and expected("common.stale", minutes=1) not in fresh

    proxy.cut()  # the registry is gone: connections dropped, new ones refused

    an = service.ussd(AN[0])
    await an.dial()
    status = await an.whole(await an.send("1"))  # dose status: from the cache, saying how old it is
    assert "Mui 1: AstraZeneca, 02/08/2021" in status and "Mui 3 (nhac lai): Pfizer, 10/03/2022" in status
    assert expected("common.stale", minutes=1) in flat(status), status

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
    assert await service.sms(AN[0]).send(f"KQ {ref}") == expected("check.queued", ref=ref)
    health = (await service.client.get("/healthz")).json()
    assert health["status"] == "ok" and "registry" in health["degraded"], health
    assert await service.state.registry.replay_pending() == 0  # still down: kept, not dropped

    proxy.restore()
    await asyncio.sleep(0.35)  # the breaker's cool-down
    assert await service.state.registry.replay_pending() >= 1  # the report (and audit lines)
    assert await service.state.registry.replay_pending() == 0
    assert await service.state.registry.pending.count_open() == 0
    assert tasks_for(server, ref) == 1  # delivered exactly once

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


async def test_registry_too_slow(fhir_service: tuple[Service, TcpProxy, FhirTestServer]) -> None:
    """Every FHIR answer takes 2 s (four times REGISTRY_TIMEOUT_SECONDS). A USSD gateway cuts a hop
    at ~15 s, so each registry call gives up after one timeout, retries included (it used to take
    `attempts x timeout`: 5 s for this turn, 50 s with the default 5 s timeout) — and the turn
    still answers from the cache, or queues the report."""
    service, _, server = fhir_service
    await login_and_see_doses(service)
    server.set_delay(2000)

    an = service.ussd(AN[0])
    await an.dial()
    started = time.monotonic()
    status = await an.send("1")
    took = time.monotonic() - started
    status = await an.whole(status)
    assert expected("common.stale", minutes=1) in flat(status) and "Mui 2: AstraZeneca" in status
    # three calls: the person, the doses, the audit line of the access
    assert took < 4 * REGISTRY_TIMEOUT, (
        f"status took {took:.1f} s with a {REGISTRY_TIMEOUT} s registry timeout"
    )

    done = await file_report(service)
    ref = REF.search(done)[0]  # type: ignore[index]
    assert flat(done).startswith("END " + expected("report.queued", ref=ref)), done

    server.set_delay(0)
    await asyncio.sleep(2.5)  # the slow POSTs the server was still carrying out have finished
    await asyncio.sleep(0.35)
    await service.state.registry.replay_pending()
    assert await service.state.registry.pending.count_open() == 0
    assert tasks_for(server, ref) == 1  # even if a timed-out attempt reached the server
