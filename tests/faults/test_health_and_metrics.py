"""/healthz names degraded dependencies (200 while the database answers) and /metrics exposes the
queue, delivery, one-time-code and registry figures, read from the running app."""

from __future__ import annotations

import re
import socket
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from outbox.store import OutboundMessage, Outbox
from registry_client.clock import utc_now
from tests.faults.service import AN, base_settings, expected, flat, running


def dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def metric(text: str, name: str) -> float:
    found = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.M)
    assert found is not None, f"{name} not in /metrics"
    return float(found[1])


async def test_healthy_service_and_its_metrics(demo_db: str, tmp_path: Path) -> None:
    async with running(
        base_settings(
            demo_db,
            tmp_path / "data",
            redis_url="redis://127.0.0.1:6379/0",
            redis_key_prefix=f"vaxtest-{uuid.uuid4().hex[:8]}",  # counters must not leak between runs
        )
    ) as service:
        health = await service.client.get("/healthz")
        assert health.status_code == 200 and health.json() == {"status": "ok"}, health.text

        caller = service.ussd(AN[0])
        await caller.dial()
        assert flat(await caller.answers("1", AN[1], AN[2])).startswith("CON " + expected("login.code_sent"))
        await caller.send(await service.last_code(AN[0]))
        text = (await service.client.get("/metrics")).text
        assert metric(text, 'outbox_messages{status="pending"}') >= 1
        assert metric(text, 'registry_call_duration_seconds_count{operation="find_person",outcome="ok"}') >= 1
        assert metric(text, 'registry_call_duration_seconds_count{operation="list_doses",outcome="ok"}') >= 1
        assert metric(text, 'otp_checks_total{outcome="ok"}') >= 1
        assert metric(text, 'registry_breaker_state{state="closed"}') == 1
        assert metric(text, "registry_breaker_open") == 0
        assert metric(text, "registry_pending_writes") == 0

        await service.state.outbox_worker.run_once()  # no Twilio configured: kept locally
        text = (await service.client.get("/metrics")).text
        assert metric(text, 'outbox_delivery_outcomes_total{channel="sms",outcome="local"}') >= 1


async def test_old_outbox_backlog_is_degraded(demo_db: str, tmp_path: Path) -> None:
    async with running(base_settings(demo_db, tmp_path / "data")) as service:
        ten_minutes_ago = utc_now() - timedelta(minutes=10)
        stuck = Outbox(
            service.state.db_sessions, seal=service.state.outbox.seal, clock=lambda: ten_minutes_ago
        )
        await stuck.put(OutboundMessage("sms", AN[0], "notification", text="stuck for ten minutes"))
        health = await service.client.get("/healthz")
        assert health.status_code == 200
        assert health.json()["degraded"]["outbox"] == "oldest due message waiting 10 min", health.text
        text = (await service.client.get("/metrics")).text
        assert metric(text, "outbox_oldest_pending_seconds") >= 590


@pytest.mark.parametrize("dependency", ["redis", "registry"])
async def test_unreachable_dependency_is_degraded_not_down(
    dependency: str, demo_db: str, tmp_path: Path
) -> None:
    port = dead_port()
    extra = (
        {"redis_url": f"redis://127.0.0.1:{port}/0"}
        if dependency == "redis"
        else {
            "registry_backend": "fhir",
            "registry_url": f"http://127.0.0.1:{port}/fhir",
            "registry_timeout_seconds": 1.0,
        }
    )
    async with running(base_settings(demo_db, tmp_path / "data", **extra)) as service:
        health = await service.client.get("/healthz")
        assert health.status_code == 200, health.text
        body = health.json()
        assert body["status"] == "ok" and set(body["degraded"]) == {dependency}, body
        assert "unreachable" in body["degraded"][dependency]
