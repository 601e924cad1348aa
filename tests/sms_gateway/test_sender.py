"""The outbox worker sending SMS through the real twilio SDK to the local Twilio stand-in."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from conversations.outbound import make_renderer
from db.base import make_async_engine, make_sessionmaker
from outbox.sealing import OutboxSeal
from outbox.store import OutboundMessage, Outbox
from outbox.worker import OutboxWorker
from settings import Settings
from sms_gateway.sender import TwilioSender
from tests.conversations.harness import FakeClock
from tests.fakes.twilio_api import TwilioStandIn

TO = "+84901234567"


@pytest.fixture
async def setup(
    sqlite_url: str, tmp_path: Path
) -> AsyncIterator[tuple[TwilioStandIn, Outbox, OutboxWorker, FakeClock]]:
    clock = FakeClock()
    engine = make_async_engine(sqlite_url)
    with TwilioStandIn(timeout_delay=0.6) as twilio:
        settings = Settings(
            data_dir=tmp_path,
            secret_key="sender-tests",
            public_base_url="https://vax.example.org",
            twilio_account_sid=twilio.account_sid,
            twilio_auth_token=twilio.auth_token,
            twilio_from=twilio.from_number,
            twilio_api_base=twilio.base_url,
        )
        outbox = Outbox(
            make_sessionmaker(engine), seal=OutboxSeal(settings.secret_keys.outbox_seal), clock=clock
        )
        worker = OutboxWorker(
            outbox,
            {"sms": TwilioSender(settings, timeout=0.3)},
            make_renderer(strip_sms_diacritics=True, hotline="1900 9095"),
        )
        yield twilio, outbox, worker, clock
    await engine.dispose()


async def _otp(outbox: Outbox) -> int:
    row_id = await outbox.put(
        OutboundMessage("sms", TO, "otp", template="sms.otp", params={"code": "482915", "minutes": 5})
    )
    assert row_id is not None
    return row_id


async def _row(outbox: Outbox, row_id: int):  # type: ignore[no-untyped-def]
    return next(r for r in await outbox.messages_to("sms", TO) if r.id == row_id)


async def test_sent_rendered_without_diacritics_with_a_status_callback(setup) -> None:  # type: ignore[no-untyped-def]
    twilio, outbox, worker, _ = setup
    row_id = await _otp(outbox)
    assert await worker.run_once() == 1
    message = await twilio.wait_for_async(to=TO)
    assert message.body == (
        "VaxChannel: ma xac thuc 482915, hieu luc 5 phut. Khong chia se ma nay. Neu ban khong yeu cau, hay bo qua."
    )
    assert message.from_ == twilio.from_number
    assert message.status_callback == "https://vax.example.org/sms/twilio/status"
    row = await _row(outbox, row_id)
    assert (row.status, row.provider_id, row.provider_status) == ("sent", message.sid, "queued")
    assert await worker.run_once() == 0  # never sent twice


@pytest.mark.parametrize("fault", [429, 500, 503, "timeout"])
async def test_transient_faults_are_retried_with_backoff(setup, fault: int | str) -> None:  # type: ignore[no-untyped-def]
    twilio, outbox, worker, clock = setup
    row_id = await _otp(outbox)
    twilio.fail_next(2, fault)
    await worker.run_once()
    row = await _row(outbox, row_id)
    assert row.status == "pending" and row.attempts == 1 and row.error_code
    assert await worker.run_once() == 0  # not due yet
    clock.advance(seconds=3)
    await worker.run_once()
    assert (await _row(outbox, row_id)).status == "pending"
    clock.advance(seconds=5)
    await worker.run_once()
    row = await _row(outbox, row_id)
    assert row.status == "sent" and row.attempts == 3
    assert len(twilio.sent_to(TO)) == 1


@pytest.mark.parametrize(("code", "status"), [(21610, "unreachable"), (21211, "failed"), (21614, "failed")])
async def test_permanent_errors_are_marked_with_twilio_code(setup, code: int, status: str) -> None:  # type: ignore[no-untyped-def]
    twilio, outbox, worker, clock = setup
    row_id = await _otp(outbox)
    twilio.fail_next(1, code)
    await worker.run_once()
    row = await _row(outbox, row_id)
    assert (row.status, row.error_code) == (status, str(code))
    clock.advance(hours=1)
    assert await worker.run_once() == 0
    assert twilio.sent_to(TO) == []
