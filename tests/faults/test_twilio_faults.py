"""Twilio answering 429, 500, 503 and not answering at all, then recovering: the outbox worker the
app wired (`app.state.outbox_worker`, the real TwilioSender against the Twilio stand-in) delivers
every one-time code exactly once. Permanent errors (21610 unsubscribed, 21211 invalid number) are
marked with Twilio's code and never retried. /metrics counts every outcome per channel."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.twilio_api import TwilioStandIn
from tests.faults.service import (
    AN,
    BINH,
    CUONG,
    FAMILY,
    FAMILY_PHONE,
    Service,
    base_settings,
    expected,
    running,
)

TIMEOUT_FAULT_DELAY = 0.8  # the stand-in keeps a "timeout" request this long …
SENDER_TIMEOUT = 0.3  # … and the sender gives up after this


class SteppedClock:
    """The outbox's clock: real time plus whatever the test skipped (retries are minutes apart)."""

    def __init__(self) -> None:
        from registry_client.clock import utc_now

        self._now, self.skipped = utc_now, timedelta()

    def __call__(self) -> Any:
        return self._now() + self.skipped

    def skip(self, **delta: float) -> None:
        self.skipped += timedelta(**delta)


@pytest.fixture
def twilio() -> Iterator[TwilioStandIn]:
    with TwilioStandIn(timeout_delay=TIMEOUT_FAULT_DELAY) as stand_in:
        yield stand_in


@pytest.fixture
async def service(
    demo_db: str, tmp_path: Path, twilio: TwilioStandIn
) -> AsyncIterator[tuple[Service, SteppedClock]]:
    settings = base_settings(
        demo_db,
        tmp_path / "data",
        twilio_account_sid=twilio.account_sid,
        twilio_auth_token=twilio.auth_token,
        twilio_from=twilio.from_number,
        twilio_api_base=twilio.base_url,
    )
    clock = SteppedClock()

    async def tune(app: Any) -> None:
        app.state.outbox.clock = clock
        app.state.outbox_worker.senders["sms"].client.http_client.timeout = SENDER_TIMEOUT

    async with running(settings, prepare=tune) as svc:
        yield svc, clock


def outcome_counts(metrics: str) -> dict[str, float]:
    found = re.findall(
        r'^outbox_delivery_outcomes_total\{channel="sms",outcome="(\w+)"\} ([\d.]+)', metrics, re.M
    )
    return {outcome: float(value) for outcome, value in found}


async def drain(service: Service, clock: SteppedClock, rounds: int = 12) -> None:
    """Runs the wired worker until nothing is due, skipping the retry back-off each time."""
    for _ in range(rounds):
        await service.state.outbox_worker.run_once()
        clock.skip(minutes=11)  # more than the longest back-off (10 min)
        if not any(r.status in ("pending", "sending") for r in await all_rows(service)):
            return


async def all_rows(service: Service) -> list[Any]:
    rows = []
    for phone in (AN[0], BINH[0], CUONG[0], FAMILY_PHONE):
        rows += await service.outbox_to(phone)
    return rows


async def test_transient_faults_then_recovery_deliver_each_message_once(
    service: tuple[Service, SteppedClock], twilio: TwilioStandIn
) -> None:
    svc, clock = service
    before = outcome_counts((await svc.client.get("/metrics")).text)
    callers = ["+84900000101", "+84900000102", "+84900000103", "+84900000104", "+84900000105"]
    logins = [(AN[1], AN[2]), (BINH[1], BINH[2]), (CUONG[1], CUONG[2]), FAMILY[0], FAMILY[1]]
    for caller, (national_id, born) in zip(callers, logins, strict=True):
        reply = await svc.sms(caller).send(f"DK {national_id} {born}")
        assert reply.startswith(expected("login.code_sent")), reply
    rows = await all_rows(svc)
    assert len(rows) == 5 and {r.kind for r in rows} == {"otp"}

    # first round: all five fail (the five sends race, so which caller meets which fault varies);
    # second round: the first send is kept waiting past the sender's timeout, so exactly one row
    # ends with "timeout" as its last error whatever the order
    for fault in (429, 500, 503, 500, 429):
        twilio.fail_next(1, fault)
    assert await svc.state.outbox_worker.run_once() == 5
    clock.skip(minutes=11)
    twilio.fail_next(1, "timeout")
    await drain(svc, clock)

    rows = await all_rows(svc)
    assert [r.status for r in rows] == ["sent"] * 5, [(r.status, r.last_error) for r in rows]
    bodies = [m.body for m in twilio.messages]
    assert len(bodies) == 5  # each exactly once
    for row in rows:
        sent = [m for m in twilio.messages if m.sid == row.provider_id]
        assert len(sent) == 1 and sent[0].to == row.address
        # the code went to Twilio; the sent row keeps it only masked, its seal dropped
        assert row.params["code"] == "••••••" and row.params["code"] not in sent[0].body
    assert sum(r.attempts for r in rows) == 5 + 6  # six failed attempts were retried
    assert [r.error_code for r in rows].count("timeout") == 1  # the sender really timed out once

    await svc.state.outbox_worker.run_once()
    clock.skip(hours=2)
    assert await svc.state.outbox_worker.run_once() == 0
    assert len(twilio.messages) == 5  # nothing sent twice later either

    after = outcome_counts((await svc.client.get("/metrics")).text)
    assert after.get("sent", 0) - before.get("sent", 0) == 5
    assert after.get("retry", 0) - before.get("retry", 0) == 6


@pytest.mark.parametrize(("code", "status"), [(21610, "unreachable"), (21211, "failed")])
async def test_permanent_error_is_marked_with_its_code_and_never_retried(
    service: tuple[Service, SteppedClock], twilio: TwilioStandIn, code: int, status: str
) -> None:
    svc, clock = service
    before = outcome_counts((await svc.client.get("/metrics")).text)
    assert (await svc.sms("+84900000201").send(f"DK {BINH[1]} {BINH[2]}")).startswith(
        expected("login.code_sent")
    )
    twilio.fail_next(1, code)
    await svc.state.outbox_worker.run_once()
    (row,) = await svc.outbox_to(BINH[0])
    assert (row.status, row.error_code, row.attempts) == (status, str(code), 1)
    requests = len(twilio.requests)
    for _ in range(3):
        clock.skip(hours=1)
        assert await svc.state.outbox_worker.run_once() == 0
    assert len(twilio.requests) == requests and twilio.messages == []
    after = outcome_counts((await svc.client.get("/metrics")).text)
    assert after.get(status, 0) - before.get(status, 0) == 1
